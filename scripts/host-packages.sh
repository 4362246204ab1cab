#!/usr/bin/env bash
# Install the Debian packages the project needs on the host when they are missing (root with
# apt only; elsewhere say what to install). Idempotent: nothing happens when all are present.
#   make, python3-venv  the Makefile and its virtualenv
#   docker.io           the Docker engine (dockerd)
#   mmdebstrap          the Python image's rootfs (containers/build.py)
#   busybox-static      the busybox image (FROM scratch needs the static binary)
#   fuse3               FastFile mounts (fusermount3)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$here/build"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
command -v make >/dev/null 2>&1 || missing+=(make)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
installed busybox-static || missing+=(busybox-static)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "host: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
  exit 2
fi
echo "host: installing ${missing[*]} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$here/build/apt.log" 2>&1 \
  || { echo "host: apt-get install failed, see $here/build/apt.log" >&2; exit 2; }
