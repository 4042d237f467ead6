# Third-party dependencies, all from Debian 12 packages.
#
# kvs::absl — the Abseil libraries we use, shared by default, static archives with KVS_STATIC.
# GTest::gtest / GTest::gtest_main — from libgtest-dev (static archives).
find_package(PkgConfig REQUIRED)
pkg_check_modules(KVS_ABSL REQUIRED absl_statusor absl_strings absl_str_format)

add_library(kvs_absl INTERFACE)
add_library(kvs::absl ALIAS kvs_absl)
target_include_directories(kvs_absl SYSTEM INTERFACE ${KVS_ABSL_INCLUDE_DIRS})
if(KVS_STATIC)
  set(_kvs_absl_libs)
  foreach(_lib IN LISTS KVS_ABSL_STATIC_LIBRARIES)
    if(_lib MATCHES "^absl_")
      list(APPEND _kvs_absl_libs "-l:lib${_lib}.a")
    else()
      list(APPEND _kvs_absl_libs "-l${_lib}")
    endif()
  endforeach()
  target_link_libraries(kvs_absl INTERFACE ${_kvs_absl_libs} -static-libstdc++ -static-libgcc)
else()
  target_link_libraries(kvs_absl INTERFACE ${KVS_ABSL_LINK_LIBRARIES})
endif()

if(KVS_BUILD_TESTS)
  find_package(GTest REQUIRED)
  find_package(Threads REQUIRED)
endif()
