// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status and absl::StatusOr (Debian's Abseil
// 20220623 ships neither). Both evaluate their argument exactly once.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KVS_CONCAT_INNER_(a, b) a##b
#define KVS_CONCAT_(a, b) KVS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    ::absl::Status kvs_status_ = (expr);                 \
    if (!kvs_status_.ok()) return kvs_status_;           \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns `x` or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  KVS_ASSIGN_OR_RETURN_IMPL_(KVS_CONCAT_(kvs_statusor_, __LINE__), lhs, expr)

#define KVS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).status();   \
  lhs = std::move(tmp).value()
