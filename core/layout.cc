// Names of the layout kinds.
#include "core/layout.h"

#include <array>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace kvshuttle {
namespace {

constexpr std::array<absl::string_view, kNumLayoutKinds> kNames = {
    "nhd", "hnd", "operational_nhd", "operational_hnd", "universal"};

}  // namespace

absl::string_view LayoutKindName(LayoutKind kind) { return kNames[static_cast<int>(kind)]; }

absl::StatusOr<LayoutKind> ParseLayoutKind(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (int i = 0; i < kNumLayoutKinds; ++i) {
    if (lower == kNames[i]) return static_cast<LayoutKind>(i);
  }
  if (lower == "operational") return LayoutKind::kOperationalNHD;
  return absl::InvalidArgumentError(absl::StrCat(
      "layout: unknown value \"", name,
      "\"; allowed: nhd, hnd, operational_nhd (or operational), operational_hnd, universal"));
}

}  // namespace kvshuttle
