// Test helper: checks a Status's exact code and that its message contains given fragments.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace kvshuttle::testing {

// Success iff `status` has exactly `code` and its message contains every one of `fragments`.
// Use as EXPECT_TRUE(HasStatus(s, absl::StatusCode::kOutOfRange, {"heads.count", "9"})).
inline ::testing::AssertionResult HasStatus(const absl::Status& status, absl::StatusCode code,
                                            std::initializer_list<std::string_view> fragments) {
  if (status.code() != code) {
    return ::testing::AssertionFailure()
           << "code " << absl::StatusCodeToString(status.code()) << ", want "
           << absl::StatusCodeToString(code) << " (status: " << status << ")";
  }
  const std::string message(status.message());  // absl::string_view is not std's here
  for (std::string_view f : fragments) {
    if (message.find(f) == std::string::npos) {
      return ::testing::AssertionFailure() << "message \"" << message << "\" lacks \"" << f << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

template <typename T>
::testing::AssertionResult HasStatus(const absl::StatusOr<T>& status_or, absl::StatusCode code,
                                     std::initializer_list<std::string_view> fragments) {
  return HasStatus(status_or.status(), code, fragments);
}

}  // namespace kvshuttle::testing
