#!/usr/bin/env bash
# Builds the docker compose deployment's images without any registry:
#
#   1. static vpnd, vpnctl and probe (glibc, `-C target-feature=+crt-static`: static-pie
#      binaries that need no libc, loader or NSS in the image);
#   2. `docker build` of two FROM scratch images from them:
#        vpnd-gateway:$VPND_TAG  /vpnd /vpnctl /probe  (node0, node1, witness, peer)
#        vpnd-probe:$VPND_TAG    /probe                (the LAN hosts lan1, lan2)
#   3. the certificates, docker/pki (`vpnctl pki init`: management CA, server and client
#      certificates, and the cluster members' certificates), if not there yet; every
#      container mounts it read-only, and vpnctl on the host uses it.
#
# Usage: scripts/docker-build.sh [--renew-pki]
#   VPND_TAG          image tag (default: local; docker-compose.yml reads the same variable)
#   CARGO_TARGET_DIR  cargo's target directory (default: target/); the binaries end up in
#                     $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/
#
# Non-interactive (CI can run it); needs cargo and a Docker Engine, no network.
set -euo pipefail
cd "$(dirname "$0")/.."

renew_pki=false
for arg in "$@"; do
    case "$arg" in
        --renew-pki) renew_pki=true ;;
        -h | --help)
            sed -n '2,20p' "$0"
            exit 0
            ;;
        *)
            echo "docker-build: unknown argument $arg" >&2
            exit 2
            ;;
    esac
done

triple=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
tag="${VPND_TAG:-local}"
bin="$CARGO_TARGET_DIR/$triple/release"
context="$CARGO_TARGET_DIR/docker-context"

die() {
    echo "docker-build: $*" >&2
    exit 1
}

command -v docker >/dev/null || die "docker not found"
docker info >/dev/null 2>&1 || die "the Docker Engine does not answer (docker info failed)"

t0=$(date +%s)
echo "== static binaries (cargo build --release --target $triple, crt-static)"
# With an explicit --target, RUSTFLAGS reach only the target's code, not build scripts
# or proc macros, which stay dynamically linked host programs.
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --target "$triple" -p node -p probe --bin vpnd --bin vpnctl --bin probe
t_cargo=$(($(date +%s) - t0))

rm -rf "$context"
mkdir -p "$context"
for b in vpnd vpnctl probe; do
    [ -x "$bin/$b" ] || die "$bin/$b was not built"
    # An image FROM scratch has no dynamic loader: refuse anything that would need one.
    if readelf -l "$bin/$b" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        die "$bin/$b is dynamically linked (it names a program interpreter)"
    fi
    cp "$bin/$b" "$context/$b"
done

echo "== images (FROM scratch)"
t1=$(date +%s)
# The legacy builder and BuildKit both build FROM scratch without pulling anything; with
# DOCKER_BUILDKIT=1 but no buildx plugin the CLI refuses to build, so fall back then.
if [ "${DOCKER_BUILDKIT:-}" = 1 ] && ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0
fi
docker build --quiet -f docker/gateway.Dockerfile -t "vpnd-gateway:$tag" "$context" >/dev/null
docker build --quiet -f docker/probe.Dockerfile -t "vpnd-probe:$tag" "$context" >/dev/null
t_images=$(($(date +%s) - t1))
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^vpnd-(gateway|probe):$tag " || true

pki=docker/pki
if $renew_pki || [ ! -f "$pki/ca.pem" ]; then
    echo "== certificates ($pki)"
    force=()
    if $renew_pki; then force=(--force); fi
    "$bin/vpnctl" pki init "$pki" "${force[@]}"
else
    echo "== certificates: keeping $pki (--renew-pki writes new ones)"
fi

echo "docker-build: done in $(($(date +%s) - t0)) s (cargo ${t_cargo} s, docker build ${t_images} s)"
echo "next: docker compose up -d   (or docker-compose up -d); vpnctl: $bin/vpnctl --pki $pki --server 127.0.0.1:50051 show chassis cluster status"
