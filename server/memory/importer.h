// Region importers: one per memory transport (legacy CUDA IPC, host memfd, named host shm, and
// so on), each in its own file, chosen by the RegisterRegionRequest's `memory` oneof through one
// table (importers.cc). An importer turns the request into mapped Memory the executors can
// address, checking the client's claim (size, device, ownership, seals) against what the
// kernel and the driver say.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "kvshuttle/v1/kvshuttle.pb.h"
#include "server/net/connections.h"
#include "server/memory/fd_tokens.h"
#include "server/runtime/gpu_runtime.h"
#include "server/runtime/memory.h"

namespace kvshuttle {

// What an importer may use besides the request.
struct ImportContext {
  const PeerIdentity& peer;  // the caller, from the kernel for unix-socket callers
  uint64_t session = 0;      // the caller's session serial (descriptor tokens are per session)
  GpuRuntime& gpu;
  FdTokens& tokens;
  int shm_trust_gid = -1;    // DaemonOptions::shm_trust_gid
};

// An imported region and how to describe it.
struct ImportedRegion {
  std::shared_ptr<Memory> memory;
  v1::MemoryKind kind = v1::MEMORY_UNSPECIFIED;
  std::string gpu_uuid;  // device regions
  int maps = 0;          // memory mappings it holds in the daemon's address space
};

using RegionImporter =
    absl::StatusOr<ImportedRegion> (*)(const v1::RegisterRegionRequest& request,
                                       const ImportContext& context);

// The importers, one per transport file.
absl::StatusOr<ImportedRegion> ImportCudaIpc(const v1::RegisterRegionRequest& request,
                                             const ImportContext& context);
absl::StatusOr<ImportedRegion> ImportHostShm(const v1::RegisterRegionRequest& request,
                                             const ImportContext& context);
absl::StatusOr<ImportedRegion> ImportHostMemfd(const v1::RegisterRegionRequest& request,
                                               const ImportContext& context);

// The importer for the request's transport; INVALID_ARGUMENT when `memory` is not set.
absl::StatusOr<RegionImporter> FindImporter(const v1::RegisterRegionRequest& request);

// Memory mappings an import of `request` would add (for the maps budget, checked before it).
int MapsOf(const v1::RegisterRegionRequest& request);

}  // namespace kvshuttle
