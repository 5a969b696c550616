#!/usr/bin/env bash
# Installs slmrun's build dependencies (Debian 12 packages) if any are missing, then configures
# and builds everything into ./build. Safe to run again: only missing packages are installed and
# the build is incremental. Environment: BUILD_DIR (default build), SLM_CUDA (AUTO|ON|OFF),
# JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")"

PKGS=(build-essential cmake pkg-config libfmt-dev doctest-dev libomp-dev libdnnl-dev
      nlohmann-json3-dev libcli11-dev libpcre2-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DSLM_CUDA="${SLM_CUDA:-AUTO}" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "setup: built $BUILD_DIR/tools/slmrun" >&2
