# Third-party dependencies, all from Debian 12 packages.
#
# kvs::absl, kvs::absl_flags — the Abseil libraries we use (see kvs_absl_target).
# GTest::gtest / GTest::gtest_main — from libgtest-dev (static archives).
find_package(PkgConfig REQUIRED)

# kvs_absl_target(<target> <pkg-config modules...>): an INTERFACE target linking those Abseil
# modules, shared by default and as static archives with KVS_STATIC.
function(kvs_absl_target target)
  string(MAKE_C_IDENTIFIER "${target}" prefix)
  pkg_check_modules(${prefix} REQUIRED ${ARGN})
  add_library(${target} INTERFACE)
  target_include_directories(${target} SYSTEM INTERFACE ${${prefix}_INCLUDE_DIRS})
  if(KVS_STATIC)
    set(libs)
    foreach(lib IN LISTS ${prefix}_STATIC_LIBRARIES)
      if(lib MATCHES "^absl_")
        list(APPEND libs "-l:lib${lib}.a")
      else()
        list(APPEND libs "-l${lib}")
      endif()
    endforeach()
    target_link_libraries(${target} INTERFACE ${libs} -static-libstdc++ -static-libgcc)
  else()
    target_link_libraries(${target} INTERFACE ${${prefix}_LINK_LIBRARIES})
  endif()
endfunction()

kvs_absl_target(kvs_absl absl_statusor absl_strings absl_str_format absl_time)
add_library(kvs::absl ALIAS kvs_absl)
kvs_absl_target(kvs_absl_flags absl_flags_parse absl_flags_usage)
add_library(kvs::absl_flags ALIAS kvs_absl_flags)

if(KVS_BUILD_TESTS)
  find_package(GTest REQUIRED)
  find_package(Threads REQUIRED)
endif()

# kvs::grpc — gRPC C++, protobuf and the reflection service (registered by a static
# initializer, hence --whole-archive when linked statically; with KVS_STATIC also OpenSSL and
# zlib as archives). KVS_HAVE_GRPC is OFF when the
# packages are missing; the daemon, client and integration tier are then not built.
pkg_check_modules(KVS_GRPC grpc++ protobuf)
find_program(KVS_PROTOC protoc)
find_program(KVS_GRPC_CPP_PLUGIN grpc_cpp_plugin)
if(KVS_GRPC_FOUND AND KVS_PROTOC AND KVS_GRPC_CPP_PLUGIN)
  set(KVS_HAVE_GRPC ON)
  add_library(kvs_grpc INTERFACE)
  add_library(kvs::grpc ALIAS kvs_grpc)
  target_include_directories(kvs_grpc SYSTEM INTERFACE ${KVS_GRPC_INCLUDE_DIRS})
  if(KVS_STATIC)
    set(_kvs_grpc_libs)
    foreach(_lib IN LISTS KVS_GRPC_STATIC_LIBRARIES)
      # OpenSSL and zlib too: a release binary needs nothing beyond the C runtime
      # (cmake/check_static.sh).
      if(_lib MATCHES "^(grpc|gpr|upb|re2|cares|address_sorting|absl_|protobuf)" OR
         _lib MATCHES "^(ssl|crypto|z)$")
        list(APPEND _kvs_grpc_libs "-l:lib${_lib}.a")
      else()
        list(APPEND _kvs_grpc_libs "-l${_lib}")
      endif()
    endforeach()
    target_link_libraries(kvs_grpc INTERFACE
      -Wl,--whole-archive -l:libgrpc++_reflection.a -Wl,--no-whole-archive
      ${_kvs_grpc_libs} -static-libstdc++ -static-libgcc)
  else()
    target_link_libraries(kvs_grpc INTERFACE
      -Wl,--no-as-needed grpc++_reflection -Wl,--as-needed ${KVS_GRPC_LINK_LIBRARIES})
  endif()
else()
  set(KVS_HAVE_GRPC OFF)
  message(STATUS "kvshuttle: gRPC/protobuf development packages not found; daemon not built")
endif()
