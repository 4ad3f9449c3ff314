#!/usr/bin/env bash
# Build hack/health-check (Flux's kstatus and Argo CD's Lua health checks, as a JSON-lines filter) from
# the Go module proxy, cached by version under ~/.cache/runwhen-operator/bin/. Safe to run concurrently:
# a lock serialises builds, and a finished binary is reused without rebuilding. Prints the binary's path.
#
# Usage: hack/build-health-check.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/hack/health-check"
CACHE="${RUNWHEN_CACHE_DIR:-$HOME/.cache/runwhen-operator}"
BIN="$CACHE/bin"
BUILD="$CACHE/health-check-build"

mod_version() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$SRC/go.mod"; }
ARGOCD_VERSION="$(mod_version github.com/argoproj/argo-cd/v3)"
CLI_UTILS_VERSION="$(mod_version sigs.k8s.io/cli-utils)"
out="$BIN/health-check-$ARGOCD_VERSION-$CLI_UTILS_VERSION"
# The sources' digest sits next to the binary, so an edited main.go is rebuilt at the same versions.
digest="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -d' ' -f1)"

log() { echo "[build-health-check] $*" >&2; }
fresh() { [ -x "$out" ] && [ "$(cat "$out.sha256" 2>/dev/null)" = "$digest" ]; }

mkdir -p "$BIN"
if ! fresh; then
  exec 9>"$CACHE/health-check.lock"
  flock 9
fi
if fresh; then
  log "health-check (argo-cd $ARGOCD_VERSION, cli-utils $CLI_UTILS_VERSION) cached at $out"
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "go is required to build hack/health-check" >&2; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
# Own module and build caches, removed after a successful build (the binary is what is cached).
export GOMODCACHE="$BUILD/gomod" GOCACHE="$BUILD/gocache"
log "building health-check (argo-cd $ARGOCD_VERSION, cli-utils $CLI_UTILS_VERSION; cold build: a few minutes)"
start=$SECONDS
go build -C "$SRC" -trimpath -ldflags "-s -w" -o "$out.tmp" .
mv "$out.tmp" "$out"
echo "$digest" > "$out.sha256"
log "health-check built in $((SECONDS - start))s: $out ($(du -h "$out" | cut -f1))"
go clean -modcache >/dev/null 2>&1 || true
rm -rf "$BUILD"
echo "$out"
