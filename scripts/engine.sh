#!/usr/bin/env bash
# Start a Docker engine if none answers: first the host packages (scripts/host-packages.sh:
# docker.io, mmdebstrap, busybox-static, fuse3 when missing, root with apt only), then dockerd in
# the background with its log under build/, waiting for the socket.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
log_dir="$here/build"
mkdir -p "$log_dir"

engine_answers() { timeout 10 docker info >/dev/null 2>&1 || python3 - <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect("/var/run/docker.sock")
s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
sys.exit(0 if b"OK" in s.recv(1024) else 1)
PY
}

bash "$here/scripts/host-packages.sh"

if engine_answers; then
  echo "engine: a Docker engine already answers"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "engine: no Docker engine answers and starting dockerd needs root; start it (sudo systemctl start docker)." >&2
  exit 2
fi

echo "engine: starting dockerd (log: $log_dir/dockerd.log)"
nohup dockerd --host unix:///var/run/docker.sock >"$log_dir/dockerd.log" 2>&1 &
for _ in $(seq 1 60); do
  if engine_answers; then echo "engine: ready"; exit 0; fi
  sleep 1
done
echo "engine: dockerd did not answer within 60 s; see $log_dir/dockerd.log" >&2
exit 2
