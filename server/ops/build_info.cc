// Build identity, from compile definitions set by server/ops/CMakeLists.txt (only this file
// recompiles when the commit changes).
#include "server/ops/build_info.h"

#include "absl/strings/str_cat.h"

#ifndef KVS_BUILD_VERSION
#define KVS_BUILD_VERSION "0.0.0"
#endif
#ifndef KVS_BUILD_COMMIT
#define KVS_BUILD_COMMIT "unknown"
#endif
#ifndef KVS_BUILD_CUDA
#define KVS_BUILD_CUDA "none"
#endif

namespace kvshuttle {

const char* BuildVersion() { return KVS_BUILD_VERSION; }
const char* BuildCommit() { return KVS_BUILD_COMMIT; }
const char* BuildCudaVersion() { return KVS_BUILD_CUDA; }

std::string VersionLine() {
  return absl::StrCat("kvshuttled ", BuildVersion(), " (commit ", BuildCommit(), ", CUDA ",
                      BuildCudaVersion(), ")");
}

}  // namespace kvshuttle
