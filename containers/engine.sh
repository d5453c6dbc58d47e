#!/usr/bin/env bash
# A local container engine for building and running the images: podman from Debian, configured for this kind
# of sandbox (runc, cgroupfs, no default ulimits), and its Docker-compatible API on a unix socket for kfp's
# DockerRunner and the docker SDK. Idempotent: installs, configures and starts only what is missing.
# Prints the socket's DOCKER_HOST value on its last line.
set -euo pipefail
SOCKET=${PODMAN_SOCKET:-/run/podman/podman.sock}
LOG=${PODMAN_SERVICE_LOG:-/tmp/podman-service.log}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq podman runc debootstrap >/dev/null
fi

# crun fails here on setrlimit and on hybrid cgroups; runc with cgroupfs and no forced ulimits works.
CONF=/etc/containers/containers.conf
MARK="# banglasenti-pipeline: containers/engine.sh"
if ! grep -qxF "$MARK" "$CONF" 2>/dev/null; then
    if [ -s "$CONF" ]; then
        echo "engine.sh: $CONF exists and is not ours; leaving it (needs runtime=runc, cgroup_manager=cgroupfs, default_ulimits=[])" >&2
    else
        $SUDO mkdir -p /etc/containers
        printf '%s\n' "$MARK" '[containers]' 'default_ulimits = []' '[engine]' 'runtime = "runc"' \
            'cgroup_manager = "cgroupfs"' 'events_logger = "file"' | $SUDO tee "$CONF" >/dev/null
    fi
fi

driver=$(podman info --format '{{.Store.GraphDriverName}}')
if [ "$driver" != overlay ]; then
    echo "engine.sh: podman's storage driver is '$driver'; overlay is needed (vfs copies every layer of 8 GB images)" >&2
    exit 1
fi

# The Docker-compatible API; a running service is reused.
if ! curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; then
    $SUDO mkdir -p "$(dirname "$SOCKET")"
    rm -f "$SOCKET"
    # From /: containers inherit the service's working directory, and conmon fails to start one whose directory
    # is gone (a removed checkout) with "write child: broken pipe".
    (cd / && nohup podman system service --time=0 "unix://$SOCKET" >"$LOG" 2>&1 &)
    for _ in $(seq 50); do
        curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1 && break
        sleep 0.2
    done
    curl -sf --unix-socket "$SOCKET" http://d/_ping >/dev/null || { echo "engine.sh: the API did not start, see $LOG" >&2; exit 1; }
fi
echo "DOCKER_HOST=unix://$SOCKET"
