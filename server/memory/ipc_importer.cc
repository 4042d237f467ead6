// Legacy CUDA IPC regions (cudaIpcGetMemHandle of an allocation base + offset + size + GPU).
#include "server/memory/importer.h"

#include "core/status_macros.h"

namespace kvshuttle {

absl::StatusOr<ImportedRegion> ImportCudaIpc(const v1::RegisterRegionRequest& request,
                                             const ImportContext& context) {
  const v1::CudaIpcMemory& m = request.cuda_ipc();
  ImportedRegion out;
  ASSIGN_OR_RETURN(out.memory, context.gpu.OpenIpc(m.handle(), m.gpu_uuid(), m.offset(), m.size()));
  out.kind = v1::MEMORY_DEVICE;
  out.gpu_uuid = m.gpu_uuid();
  return out;
}

}  // namespace kvshuttle
