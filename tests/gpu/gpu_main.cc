// main() of every GPU test binary: skips (exit 77, which CTest reports as skipped) when no
// CUDA device is usable, otherwise names the device and runs the tests.
#include <cstdio>

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "tests/gpu/gpu_test_util.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();  // listing needs no device

  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    if (error == cudaSuccess) {
      std::printf("SKIPPED: no CUDA device (cudaGetDeviceCount: 0 devices); GPU tier not run\n");
    } else {
      std::printf("SKIPPED: no CUDA device (cudaGetDeviceCount: %s: %s); GPU tier not run\n",
                  cudaGetErrorName(error), cudaGetErrorString(error));
    }
    return 77;
  }
  cudaDeviceProp prop{};
  int driver = 0;
  int runtime = 0;
  cudaError_t info = cudaGetDeviceProperties(&prop, 0);
  if (info == cudaSuccess) info = cudaDriverGetVersion(&driver);
  if (info == cudaSuccess) info = cudaRuntimeGetVersion(&runtime);
  if (info != cudaSuccess) {
    std::printf("FAILED: querying device 0: %s (%s)\n", cudaGetErrorName(info),
                cudaGetErrorString(info));
    return 1;
  }
  std::printf("GPU tier on device 0 of %d: %s, compute capability %d.%d, %d SMs, driver %d.%d, "
              "runtime %d.%d\n",
              count, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
              driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
  std::fflush(stdout);
  ::testing::AddGlobalTestEnvironment(new kvshuttle::gputest::ConverterEnvironment);
  return RUN_ALL_TESTS();
}
