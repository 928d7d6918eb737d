#!/usr/bin/env bash
# Builds privatoon's OCI image without a Docker engine and without a base image from a registry.
#
#   deploy/image/build.sh [--out DIR] [--tag NAME] [--no-build] [--node PATH]
#
# Two stages, so that nothing used to build ever reaches the image:
#  1. build, on this machine with its toolchain: `npm run build` (tsc and the generated models), then the production
#     dependencies alone (`npm ci --omit=dev --ignore-scripts`, from the lockfile) in a staging folder, with the
#     onnxruntime binaries of other platforms pruned;
#  2. runtime, assembled distroless-style in DIR/context: the node binary, exactly the shared libraries that it and
#     the native addons (sharp, onnxruntime) link against (found with ldd: glibc, libstdc++, libgcc_s; sharp ships its
#     own libvips), /etc/passwd and /etc/group naming the fixed non-root user (UID/GID 10001), empty mount points,
#     and /app (dist/ without tests and benchmarks, web/, the built-in models, package.json, node_modules). No shell,
#     no npm, no compiler, no package manager, no /tmp.
# Then, where podman exists, `podman build` turns the context into the image (deploy/image/Containerfile: FROM
# scratch, three COPY layers) and saves it as DIR/privatoon.oci.tar (an OCI archive: `podman load`, `skopeo copy
# oci-archive:...`). Without podman, DIR/rootfs is still assembled and the script says so.
#
# DIR/rootfs is the image's root file system as one folder (hard links into the context), for `chroot`/`unshare`
# proofs (test/deploy/image.test.ts). Run it as root (the files of the image belong to root; the service only reads).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT="$ROOT/build/image"
TAG=localhost/privatoon:latest
BUILD=1
NODE_BIN=$(command -v node)
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --no-build) BUILD=; shift ;;
    --node) NODE_BIN=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--tag NAME] [--no-build] [--node PATH]" >&2; exit 2 ;;
  esac
done
NODE_BIN=$(readlink -f "$NODE_BIN")
APP_UID=10001
log() { printf '== %s\n' "$*" >&2; }

# --- stage 1: build ----------------------------------------------------------------------------------------------
export ONNXRUNTIME_NODE_INSTALL=skip ORT_DISABLE_TELEMETRY=1
if [ -n "$BUILD" ]; then
  log "npm run build"
  (cd "$ROOT" && npm run --silent build)
fi
[ -f "$ROOT/dist/server.js" ] && [ -f "$ROOT/models/builtin/toon.onnx" ] || { echo "dist/ or the built-in model is missing: run npm run build" >&2; exit 1; }

rm -rf "$OUT/context" "$OUT/rootfs" "$OUT/privatoon.oci.tar"
ctx="$OUT/context"
app="$ctx/app"
mods="$ctx/modules"
sys="$ctx/system"
mkdir -p "$app/dist" "$app/models/builtin" "$mods" "$sys"

log "app: dist/ (no tests, benchmarks, generators or source maps), web/, the built-in models"
(cd "$ROOT/dist" && find . -type f -name '*.js' ! -path './test/*' ! -path './bench/*' ! -path './models/generate/*' -print0 |
  xargs -0 cp --parents -t "$app/dist")
cp -r "$ROOT/web" "$app/web"
cp "$ROOT"/models/builtin/*.json "$ROOT"/models/builtin/*.onnx "$app/models/builtin/"
cp "$ROOT/package.json" "$ROOT/package-lock.json" "$mods/"

log "production dependencies: npm ci --omit=dev --ignore-scripts (from the lockfile)"
# --ignore-scripts: no install script is needed (onnxruntime's CPU binaries and sharp's libvips ship in their packages),
# and none of the project's (prepare would run the TypeScript build).
(cd "$mods" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
rm -f "$mods/package.json" "$mods/package-lock.json" "$mods/node_modules/.package-lock.json"
ort="$mods/node_modules/onnxruntime-node/bin/napi-v6"
find "$ort" -mindepth 2 -maxdepth 2 ! -path "$ort/linux/x64" -exec rm -rf {} +
find "$ort" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} +
# Type declarations, source maps, documents and the odd maintainer script: nothing node loads.
find "$mods/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' -o -name '*.sh' \) ! -iname 'licen[cs]e*' -delete
# sharp for other platforms is never installed (optional dependencies by os/cpu); the musl build is not used on glibc.
rm -rf "$mods"/node_modules/@img/*-linuxmusl-*
# The model tools' own dependencies (`privatoon import` and `quantize` write ONNX through onnx-proto/protobufjs):
# the server never loads them, and the image runs the server only.
rm -rf "$mods"/node_modules/onnx-proto "$mods"/node_modules/protobufjs "$mods"/node_modules/@protobufjs "$mods"/node_modules/long
# @julusian/jpeg-turbo is there for its prebuilt libturbojpeg (workers/jpeg.ts calls it through koffi): the other
# platforms' builds and the build tool it would compile itself with (cmake-js) are never loaded.
jt="$mods/node_modules/@julusian/jpeg-turbo/prebuilds"
find "$jt" -mindepth 1 -maxdepth 1 ! -name jpeg-turbo-linux-x64 -exec rm -rf {} +
rm -rf "$mods"/node_modules/cmake-js
cp "$ROOT/package.json" "$app/package.json" # "type": "module", read by node

# --- stage 2: the runtime root ---------------------------------------------------------------------------------
log "runtime: node ($("$NODE_BIN" --version)) and the libraries it and the addons link against"
mkdir -p "$sys/usr/local/bin" "$sys/etc" "$sys/etc/privatoon" "$sys/proc" "$sys/sys" "$sys/dev"
cp "$NODE_BIN" "$sys/usr/local/bin/node"
addons=$(find "$mods/node_modules" -type f \( -name '*.node' -o -name '*.so' -o -name '*.so.*' \))
libs=$( { ldd "$NODE_BIN"; for f in $addons; do ldd "$f"; done; } |
  awk '/=> \// { print $3 } /^[ \t]*\/[^ ]*ld-linux/ { print $1 }' | grep -v "^$mods/" | sort -u)
for lib in $libs; do
  mkdir -p "$sys$(dirname "$lib")"
  cp -L "$lib" "$sys$lib"
done
# glibc reads these; Kubernetes mounts /etc/hosts and /etc/resolv.conf itself.
printf 'root:x:0:0:root:/nonexistent:/sbin/nologin\nprivatoon:x:%s:%s:privatoon:/nonexistent:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' "$APP_UID" "$APP_UID" > "$sys/etc/passwd"
printf 'root:x:0:\nprivatoon:x:%s:\nnogroup:x:65534:\n' "$APP_UID" > "$sys/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$sys/etc/nsswitch.conf"

# Everything belongs to root and is read-only to the service: it owns nothing it could change.
[ "$(id -u)" -ne 0 ] || chown -R 0:0 "$ctx" # rootless: podman COPY gives the files to root anyway
chmod -R u=rwX,go=rX "$ctx"

log "root file system: $OUT/rootfs"
mkdir -p "$OUT/rootfs"
cp -al "$sys/." "$OUT/rootfs/"
cp -al "$mods/." "$OUT/rootfs/app/"
cp -al "$app/." "$OUT/rootfs/app/"
echo "root file system: $(du -sh --apparent-size "$OUT/rootfs" | cut -f1) uncompressed, $(find "$OUT/rootfs" -type f | wc -l) files"

if ! command -v podman >/dev/null; then
  echo "podman is not installed (Debian package podman): no OCI image built; the root file system is in $OUT/rootfs" >&2
  exit 0
fi
log "podman build -t $TAG"
podman build --quiet -f "$ROOT/deploy/image/Containerfile" -t "$TAG" "$ctx" >&2
podman save --quiet --format oci-archive -o "$OUT/privatoon.oci.tar" "$TAG"
# The archive's layers are gzip-compressed: its size is about what a registry stores and a node pulls.
echo "image $TAG: $(podman image inspect --format '{{.Size}}' "$TAG") bytes unpacked, $(stat -c %s "$OUT/privatoon.oci.tar") bytes as an OCI archive ($OUT/privatoon.oci.tar)"
