// CUDA error → absl::Status, with the failing call and its location as context.
#pragma once

#include "absl/strings/string_view.h"

#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace kvshuttle {

// OK for cudaSuccess. Otherwise a Status whose message reads "<context>: <cudaGetErrorName>
// (<cudaGetErrorString>)". Codes: INVALID_ARGUMENT for cudaErrorInvalidValue/InvalidDevice-
// Pointer, FAILED_PRECONDITION for cudaErrorInvalidDevice/NoDevice, RESOURCE_EXHAUSTED for
// cudaErrorMemoryAllocation, INTERNAL for everything else (sticky errors included).
absl::Status CudaStatus(cudaError_t error, absl::string_view context);

}  // namespace kvshuttle

#define KVS_CUDA_STRINGIFY_INNER_(x) #x
#define KVS_CUDA_STRINGIFY_(x) KVS_CUDA_STRINGIFY_INNER_(x)

// Evaluates a CUDA runtime call; on failure returns a Status naming the call and file:line.
#define CUDA_RETURN_IF_ERROR(call)                                                       \
  do {                                                                                   \
    const cudaError_t kvs_cuda_error_ = (call);                                          \
    if (kvs_cuda_error_ != cudaSuccess) {                                                \
      return ::kvshuttle::CudaStatus(kvs_cuda_error_,                                    \
                                     #call " at " __FILE__ ":" KVS_CUDA_STRINGIFY_(__LINE__)); \
    }                                                                                    \
  } while (false)
