# Finds the CUDA compiler (optional) and sets default architectures.
#
# Sets KVS_HAVE_CUDA. Architectures: whatever the user set (CMAKE_CUDA_ARCHITECTURES or the
# CUDAARCHS environment variable) wins; otherwise 80;90 (A100, H100/H200).
include(CheckLanguage)
set(KVS_HAVE_CUDA OFF)
if(KVS_ENABLE_CUDA)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc 13's C++20 flag; tell it.
    if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_EXTENSIONS OFF)
    find_package(CUDAToolkit REQUIRED)
    set(KVS_HAVE_CUDA ON)
    message(STATUS "kvshuttle: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")
  else()
    message(STATUS "kvshuttle: no CUDA compiler found; building without kernels (GPU tier will report skipped)")
  endif()
endif()
