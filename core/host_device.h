// Marks functions callable from both host and device code. Under nvcc it expands to
// `__host__ __device__`; everywhere else to nothing, so core/ never includes a CUDA header.
#pragma once

#if defined(__CUDACC__)
#define KVS_HD __host__ __device__ __forceinline__
#else
#define KVS_HD inline
#endif
