// Host memory as memfd: a descriptor the client sent over the side channel, sealed against
// shrinking, mapped as it was given (no name is opened, nothing the client could truncate).
#include "server/memory/importer.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/memory/host_mapping.h"

namespace kvshuttle {

absl::StatusOr<ImportedRegion> ImportHostMemfd(const v1::RegisterRegionRequest& request,
                                               const ImportContext& context) {
  const v1::HostMemfdMemory& m = request.host_memfd();
  if (m.fd_token().size() != kFdTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("host_memfd.fd_token: ", m.fd_token().size(),
                                                   " bytes; a token is ", kFdTokenBytes));
  }
  ASSIGN_OR_RETURN(UniqueFd fd,
                   context.tokens.Take(context.session, m.fd_token(), m.fd_index(), absl::Now()));
  ImportedRegion out;
  ASSIGN_OR_RETURN(out.memory, MapMemfd(fd.get(), m.offset(), m.size(), context.gpu));
  out.kind = v1::MEMORY_HOST;
  out.maps = 1;
  return out;  // `fd` closes here; the mapping keeps the memory
}

}  // namespace kvshuttle
