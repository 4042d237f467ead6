// Backend names.
#include "core/backend.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kvshuttle {

absl::string_view BackendName(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kKernel: return "kernel";
    case Backend::kBatch: return "batch";
    case Backend::kAsync: return "async";
    case Backend::kStaged: return "staged";
  }
  return "unknown";
}

absl::StatusOr<Backend> ParseBackend(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (Backend b : {Backend::kAuto, Backend::kKernel, Backend::kBatch, Backend::kAsync,
                    Backend::kStaged}) {
    if (lower == BackendName(b)) return b;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("backend: unknown value \"", name, "\"; allowed: auto, kernel, batch, async, staged"));
}

}  // namespace kvshuttle
