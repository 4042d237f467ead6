// What this binary is: project version (CMake), git commit (at configure time) and the CUDA
// runtime it links (cudart is static, so the toolkit version it was built with).
#pragma once

#include <string>

namespace kvshuttle {

const char* BuildVersion();      // "0.1.0"
const char* BuildCommit();       // short sha, or "unknown" outside a git checkout
const char* BuildCudaVersion();  // "13.0", or "none" for a build without CUDA

// `kvshuttled --version`: "kvshuttled 0.1.0 (commit abc123def456, CUDA 13.0)".
std::string VersionLine();

}  // namespace kvshuttle
