#!/usr/bin/env bash
# Checks that release binaries need nothing beyond the C runtime at run time, so that they run
# on any x86-64 Linux with glibc ≥ the one they were built against (Debian 12: 2.36) and the
# NVIDIA driver: gRPC, protobuf, Abseil, cudart, libstdc++ and libgcc must be linked in.
# libcuda must NOT be a dependency: cudart_static loads the driver with dlopen at run time,
# so the daemon also starts (CPU executor only) where no driver is installed.
#
#   cmake/check_static.sh BINARY...      exit 0 when every binary passes, 1 otherwise
set -euo pipefail

if [ $# -eq 0 ]; then
  echo "usage: $0 BINARY..." >&2
  exit 2
fi

# The C runtime: glibc's libraries and its dynamic loader.
allowed='^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-x86-64\.so\.2)$'
status=0
for binary in "$@"; do
  if [ ! -f "$binary" ]; then
    echo "check_static: $binary: no such file" >&2
    status=1
    continue
  fi
  needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*Shared library: \[\(.*\)\]/\1/p')
  bad=$(grep -Ev "$allowed" <<<"$needed" | grep -v '^$' || true)
  glibc=$(readelf -V "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -1)
  if [ -n "$bad" ]; then
    echo "check_static: FAIL $binary needs libraries beyond the C runtime:" >&2
    sed 's/^/  /' <<<"$bad" >&2
    status=1
  else
    echo "check_static: ok   $binary needs only: $(tr '\n' ' ' <<<"$needed")(newest symbol version ${glibc:-none})"
  fi
  # Informational: a CUDA build carries cudart, which dlopens the driver.
  if grep -q -a 'libcuda\.so\.1' "$binary"; then
    echo "check_static:      $binary loads libcuda.so.1 with dlopen (not linked)"
  fi
done
exit $status
