// Named POSIX shm regions (compatibility): opened only when the caller owns the object.
#include "server/memory/importer.h"

#include "core/status_macros.h"
#include "server/memory/host_mapping.h"

namespace kvshuttle {

absl::StatusOr<ImportedRegion> ImportHostShm(const v1::RegisterRegionRequest& request,
                                             const ImportContext& context) {
  const v1::HostShmMemory& m = request.host_shm();
  // Over TCP the caller has no uid: only objects of the trusted group may be lent then.
  if (!context.peer.local && context.shm_trust_gid < 0) {
    return absl::FailedPreconditionError(
        "host_shm: over TCP the daemon cannot tell who owns a shm object; lend it over the unix "
        "socket, or start the daemon with --shm_trust_group naming the object's group");
  }
  const ShmAccess access{context.peer.local ? context.peer.uid : static_cast<uid_t>(-1),
                         context.shm_trust_gid};
  ImportedRegion out;
  ASSIGN_OR_RETURN(out.memory,
                   MapSharedMemory(m.name(), m.offset(), m.size(), access, context.gpu));
  out.kind = v1::MEMORY_HOST;
  out.maps = 1;
  return out;
}

}  // namespace kvshuttle
