#!/usr/bin/env bash
# Build kube-apiserver and etcd from the Go module proxy, cached by version under
# ~/.cache/runwhen-operator/bin/. Safe to run concurrently: a lock serialises builds,
# and a finished binary is reused without rebuilding.
#
# Usage: hack/build-controlplane.sh [kube-apiserver|etcd|all]
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.35.8}"
ETCD_VERSION="${ETCD_VERSION:-3.5.35}"
CACHE="${RUNWHEN_CACHE_DIR:-$HOME/.cache/runwhen-operator}"
BIN="$CACHE/bin"
BUILD="$CACHE/build"
what="${1:-all}"

mkdir -p "$BIN" "$BUILD"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
# Keep the build's own module and build caches with the binaries so a warm machine reuses them.
export GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" GOCACHE="${GOCACHE_OVERRIDE:-$CACHE/gocache}"
command -v go >/dev/null || { echo "go is required to build the test control plane" >&2; exit 1; }

log() { echo "[build-controlplane] $*" >&2; }

build_apiserver() {
  local out="$BIN/kube-apiserver-v$KUBE_VERSION"
  [ -x "$out" ] && { log "kube-apiserver v$KUBE_VERSION cached at $out"; return; }
  local dir="$BUILD/kube-apiserver-v$KUBE_VERSION"
  local staging_ver="v0.${KUBE_VERSION#1.}"
  mkdir -p "$dir"
  log "building kube-apiserver v$KUBE_VERSION (cold build: expect 10-25 minutes)"
  local start=$SECONDS
  (
    cd "$dir"
    rm -f go.mod go.sum main.go
    go mod init runwhen-operator.local/kube-apiserver-build >/dev/null 2>&1
    go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" >/dev/null
    local modfile
    modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/v$KUBE_VERSION.mod"
    # Every staging module is required at v0.0.0 in kubernetes' go.mod: replace each with its tag.
    local staging
    staging=$(grep -E '^\s+k8s.io/[A-Za-z0-9._-]+ v0\.0\.0\s*$' "$modfile" | awk '{print $1}' | sort -u)
    [ -n "$staging" ] || { log "no staging modules found in $modfile"; exit 1; }
    go mod edit -require="k8s.io/kubernetes@v$KUBE_VERSION"
    for m in $staging; do go mod edit -replace="$m=$m@$staging_ver"; done
    cat > main.go <<'GO'
package main

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
    go mod tidy >/dev/null 2>&1 || true
    rm -f main.go
    local minor="${KUBE_VERSION#1.}"; minor="${minor%%.*}"
    local ld="-s -w"
    ld+=" -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
    ld+=" -X k8s.io/component-base/version.gitMajor=1"
    ld+=" -X k8s.io/component-base/version.gitMinor=$minor"
    ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
    ld+=" -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION"
    ld+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
    ld+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@v$KUBE_VERSION" >/dev/null 2>&1 || true
    go build -trimpath -ldflags "$ld" -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$out.tmp" "$out"
  log "kube-apiserver v$KUBE_VERSION built in $((SECONDS - start))s"
}

build_etcd() {
  local out="$BIN/etcd-v$ETCD_VERSION"
  [ -x "$out" ] && { log "etcd v$ETCD_VERSION cached at $out"; return; }
  local dir="$BUILD/etcd-v$ETCD_VERSION"
  mkdir -p "$dir"
  log "building etcd v$ETCD_VERSION"
  local start=$SECONDS
  (
    cd "$dir"
    rm -f go.mod go.sum
    go mod init runwhen-operator.local/etcd-build >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    # server/v3's go.mod pins its sibling modules at the same release; no replaces are needed.
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1 || true
    local ld="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v$ETCD_VERSION"
    go build -trimpath -ldflags "$ld" -o "$out.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$out.tmp" "$out"
  log "etcd v$ETCD_VERSION built in $((SECONDS - start))s"
}

exec 9>"$CACHE/build.lock"
flock 9
case "$what" in
  kube-apiserver) build_apiserver ;;
  etcd) build_etcd ;;
  all) build_etcd; build_apiserver ;;
  *) echo "usage: $0 [kube-apiserver|etcd|all]" >&2; exit 2 ;;
esac
# The binaries are what is cached; the Go build and module caches (about 3 GB) are not needed again.
if [ -d "$GOMODCACHE" ] || [ -d "$GOCACHE" ]; then
  if [ -x "$BIN/kube-apiserver-v$KUBE_VERSION" ] && [ -x "$BIN/etcd-v$ETCD_VERSION" ]; then
    go clean -modcache >/dev/null 2>&1 || true
    rm -rf "$GOCACHE" "$GOMODCACHE" "$BUILD"
  fi
fi
