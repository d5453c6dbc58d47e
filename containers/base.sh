#!/usr/bin/env bash
# A local stand-in for the images' pinned base (python:3.11.14-slim-bookworm) where no registry serves it:
# Debian bookworm's own python3.11 in a minimal debootstrap root, imported and tagged under the pinned name,
# for local builds only (never pushed). Differences from the real base: docs/containers.md. Idempotent: an
# image under that name made by this very script is kept (FORCE=1 rebuilds it).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=$(sed -n 's/^FROM \([^ ]*\).*$/\1/p' containers/cpu.Dockerfile | head -1)
[ -n "$BASE" ] || { echo "base.sh: no FROM line in containers/cpu.Dockerfile" >&2; exit 1; }
REF=docker.io/library/${BASE%%@*}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# libpython3.11: torch_xla's _XLAC links libpython3.11.so.1.0, which the real base has (a shared-library build).
SCRIPT=$(sha256sum "$0" | cut -c1-16)
if [ "${FORCE:-0}" != 1 ] && podman image exists "$REF" \
    && [ "$(podman image inspect --format '{{index .Labels "banglasenti.base-script"}}' "$REF")" = "$SCRIPT" ]; then
    echo "base.sh: $REF exists (FORCE=1 rebuilds it)"
    exit 0
fi
ROOT=$(mktemp -d /var/tmp/banglasenti-base.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,libpython3.11,ca-certificates \
    bookworm "$ROOT" "$MIRROR" >/dev/null
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/*.log
# The real base's environment and default command; its python lives in /usr/local/bin, this one in /usr/bin.
tar -C "$ROOT" --numeric-owner -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL banglasenti.base-script=$SCRIPT" \
    --message "stand-in for $BASE: debootstrap bookworm minbase + Debian python3" - "$REF" >/dev/null
podman image inspect --format '{{.Id}} {{.Size}}' "$REF"
