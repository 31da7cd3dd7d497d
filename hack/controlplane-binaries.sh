#!/usr/bin/env bash
# Builds (or finds) the binaries the local backend runs as processes:
#
#   etcd            the one on PATH; else Debian's etcd-server, installed with apt-get
#                   (as root); else (no root, or EGRESSLAB_ETCD_FROM_SOURCE=1, which
#                   forces it) built in tools/etcd from the go.etcd.io/etcd version it pins
#   kube-apiserver  built from k8s.io/kubernetes at the version tools/kubernetes pins
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

tag=controlplane-binaries
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"

kube_version=$(go_version "$root/tools/kubernetes" k8s.io/kubernetes)
etcd_version=$(go_version "$root/tools/etcd" go.etcd.io/etcd/server/v3)
istio_version=$(go_version "$root" istio.io/istio)
mkdir -p "$bin"

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

build kube-apiserver "$kube_version" "$root/tools/kubernetes" k8s.io/kubernetes/cmd/kube-apiserver "$(kube_ldflags "$kube_version")"
build pilot-discovery "$istio_version" "$root" istio.io/istio/pilot/cmd/pilot-discovery "$(istio_ldflags "$istio_version")" same-as-lab

if [[ $missing -ne 0 ]]; then
  say "missing binaries; run hack/controlplane-binaries.sh"
  exit 1
fi
say "done: binaries in $bin"
