#!/usr/bin/env bash
# Installs what the fuzz tier adds to cmake/install_deps.sh: clang and libFuzzer (Debian 12:
# clang 14, libclang-rt-14-dev), skipping what is already present. Needs root (or sudo) only
# when something is missing. (The asan/tsan presets use GCC's sanitizers, which come with
# build-essential.)
set -euo pipefail

packages=(clang libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "fuzz deps: clang and libFuzzer present"
  exit 0
fi

echo "fuzz deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "fuzz deps: missing packages and not root; run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
