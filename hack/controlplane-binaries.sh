#!/usr/bin/env bash
# Builds (or finds) the binaries the local backend runs as processes:
#
#   etcd            the one on PATH; else Debian's etcd-server, installed with apt-get
#                   (as root); else (no root, or EGRESSLAB_ETCD_FROM_SOURCE=1, which
#                   forces it) built in tools/etcd from the go.etcd.io/etcd version it pins
#   kube-apiserver  built from k8s.io/kubernetes at the version tools/kube-apiserver pins
#   pilot-discovery istiod, built from the main module itself, with the same flags as
#                   the lab binary (`make`'s plain `go build`), so the Istio packages
#                   both compile are compiled once and shared through the Go build cache
#
# into one cache folder (default .cache/bin; override with EGRESSLAB_BIN, which the
# local backend reads too). Each binary's file name carries its version, so a folder
# that already holds the right versions is reused as it is, and a version bump builds
# only what changed. Usage:
#
#   hack/controlplane-binaries.sh          build what is missing
#   hack/controlplane-binaries.sh --check  build nothing; exit 1 if anything is missing
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${EGRESSLAB_BIN:-$root/.cache/bin}
check_only=false
[[ ${1:-} == --check ]] && check_only=true

start=$(date +%s)
say() { printf '[controlplane-binaries +%ss] %s\n' "$(($(date +%s) - start))" "$*" >&2; }
missing=0

mkdir -p "$bin"

kube_version=$(cd "$root/tools/kube-apiserver" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(cd "$root/tools/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
istio_version=$(cd "$root" && go list -m -f '{{.Version}}' istio.io/istio)

# build NAME VERSION DIR PACKAGE LDFLAGS [same-as-lab]: go build PACKAGE in module DIR
# into $bin/NAME-VERSION, unless it is already there. Separate modules build static and
# trimmed; "same-as-lab" builds with the lab binary's own flags (none), so that what the
# two share is compiled once (ldflags only change the link).
build() {
  local name=$1 version=$2 dir=$3 pkg=$4 ldflags=$5 same_as_lab=${6:-}
  local out="$bin/$name-$version"
  if [[ -x $out ]]; then
    say "$name $version: reusing $out"
    return
  fi
  if $check_only; then
    say "$name $version: missing ($out)"; missing=1
    return
  fi
  say "$name $version: building $pkg (a few minutes when cold)"
  local t0; t0=$(date +%s)
  if [[ -n $same_as_lab ]]; then
    (cd "$dir" && go build -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  else
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  fi
  mv "$out.tmp" "$out"
  say "$name $version: built in $(($(date +%s) - t0))s -> $out"
}

# --- etcd -------------------------------------------------------------------------
# From source when forced, or when it cannot come from PATH or apt-get (no root): the
# Go module proxy is all it needs, like kube-apiserver and istiod. $bin/etcd links to
# whichever etcd is used.
etcd_from_source=false
[[ ${EGRESSLAB_ETCD_FROM_SOURCE:-} == 1 ]] && etcd_from_source=true
etcd_path=
$etcd_from_source || etcd_path=$(command -v etcd || true)
if [[ -z $etcd_path && -x $bin/etcd-$etcd_version ]]; then
  etcd_from_source=true # built before: reuse it rather than install another
fi
if [[ -z $etcd_path ]] && ! $etcd_from_source && ! { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; }; then
  etcd_from_source=true # not root (or no apt-get): build it instead
fi
if $etcd_from_source; then
  build etcd "$etcd_version" "$root/tools/etcd" go.etcd.io/etcd/server/v3 "-s -w"
  [[ -x $bin/etcd-$etcd_version ]] && etcd_path=etcd-$etcd_version # relative: the link moves with $bin
elif [[ -z $etcd_path ]]; then
  if $check_only; then
    say "etcd: missing (Debian package etcd-server, or EGRESSLAB_ETCD_FROM_SOURCE=1 to build it)"; missing=1
  else
    say "etcd: installing Debian's etcd-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # The local backend starts its own etcd, on a free loopback port, per run.
    apt-get install -y -qq --no-install-recommends etcd-server >&2
    # Where systemd runs, the package starts a system etcd on 2379: nothing needs it.
    if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
      systemctl disable --now etcd >&2 || true
    fi
    etcd_path=$(command -v etcd)
  fi
fi
if [[ -n $etcd_path ]]; then
  [[ $etcd_path == "$bin/etcd" ]] || ln -sfn "$etcd_path" "$bin/etcd"
  say "etcd: $("$bin/etcd" --version 2>/dev/null | head -1) at $bin/etcd -> $etcd_path"
fi

# kube-apiserver reports its version (GET /version) from these, as Kubernetes' own
# build (hack/lib/version.sh) sets them.
kube_minor=$(echo "$kube_version" | cut -d. -f2)
kube_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=$kube_minor"
  kube_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
build kube-apiserver "$kube_version" "$root/tools/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"

istio_ldflags="-s -w"
istio_ldflags+=" -X istio.io/istio/pkg/version.buildVersion=$istio_version"
istio_ldflags+=" -X istio.io/istio/pkg/version.buildGitRevision=${istio_version##*-}"
istio_ldflags+=" -X istio.io/istio/pkg/version.buildStatus=Clean"
istio_ldflags+=" -X istio.io/istio/pkg/version.buildTag=$istio_version"
build pilot-discovery "$istio_version" "$root" istio.io/istio/pilot/cmd/pilot-discovery "$istio_ldflags" same-as-lab

if [[ $missing -ne 0 ]]; then
  say "missing binaries; run hack/controlplane-binaries.sh"
  exit 1
fi
say "done: binaries in $bin"
