#!/usr/bin/env bash
# Packs a release tarball from a static build (`make dist`):
#   dist/kvshuttle-<version>-linux-x86_64.tar.gz
#     bin/kvshuttled bin/kvshuttle (stripped)   deploy/ (all but deploy/dev)   docs/
#     README.md  LICENSE (when present)  MANIFEST  SHA256SUMS
# The binaries must pass cmake/check_static.sh first. File times and owners in the tarball are
# fixed (the commit's time, root) and MANIFEST holds no build date, so packing the same build
# twice gives the same archive.
#
#   cmake/make_dist.sh BUILD_DIR OUT_DIR
set -euo pipefail

build=${1:?usage: make_dist.sh BUILD_DIR OUT_DIR}
out=${2:?usage: make_dist.sh BUILD_DIR OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
daemon=$build/server/kvshuttled
cli=$build/client/kvshuttle

bash "$repo/cmake/check_static.sh" "$daemon" "$cli"

# "kvshuttled 0.1.0 (commit abc123, CUDA 13.0)"
version_line=$("$daemon" --version)
version=$(sed -n 's/^kvshuttled \([^ ]*\) .*/\1/p' <<<"$version_line")
if [ -z "$version" ]; then
  echo "make_dist: cannot read the version from: $version_line" >&2
  exit 1
fi
name=kvshuttle-$version-linux-x86_64
stage=$out/$name
rm -rf "$stage" "$out/$name.tar.gz"
mkdir -p "$stage/bin"

strip --strip-unneeded -o "$stage/bin/kvshuttled" "$daemon"
strip --strip-unneeded -o "$stage/bin/kvshuttle" "$cli"
bash "$repo/cmake/check_static.sh" "$stage/bin/kvshuttled" "$stage/bin/kvshuttle" >/dev/null

mkdir -p "$stage/deploy"
for entry in "$repo"/deploy/*; do
  [ "$(basename "$entry")" = dev ] && continue  # `make run`'s helper, not for operators
  cp -a "$entry" "$stage/deploy/"
done
cp -a "$repo/docs" "$stage/docs"
cp "$repo/README.md" "$stage/"
[ -f "$repo/LICENSE" ] && cp "$repo/LICENSE" "$stage/"

epoch=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
{
  echo "name: $name"
  echo "version: $version"
  echo "build: $version_line"
  echo "source: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
  echo "linked: $("$repo/cmake/check_static.sh" "$stage/bin/kvshuttled" | sed -n 's/.*needs only: //p' | head -1)"
  echo "files:"
  (cd "$stage" && find . -type f ! -name MANIFEST ! -name SHA256SUMS | sed 's|^\./|  |' | LC_ALL=C sort)
} >"$stage/MANIFEST"
(cd "$stage" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort |
  xargs -d '\n' sha256sum >SHA256SUMS)

tar -C "$out" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  --mode='u+rwX,go+rX,go-w' -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
rm -rf "$stage"
echo "make_dist: $out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1))"
