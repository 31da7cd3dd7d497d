#!/usr/bin/env bash
# Builds the programs a person types a handout's commands with, for the handouts'
# by-hand test (scenarios/handouts_test.go): kubectl from k8s.io/kubernetes at the
# version tools/kubernetes pins (the offline node's own kubectl), and helm from
# helm.sh/helm/v4 at the version of the Helm SDK the main module installs Istio with
# (tools/helm pins the same). Each is built once into the cache folder (EGRESSLAB_BIN,
# default .cache/bin) under its version, and a folder of links named kubectl and helm is
# made for PATH, with egresslab itself (the migrate lab's handout runs `egresslab
# suggest`), built as `make` builds bin/egresslab, so from the Go build cache the lab
# binary's build fills. Prints EGRESSLAB_HANDOUT_TOOLS=<that folder> on stdout.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${EGRESSLAB_BIN:-$root/.cache/bin}
check_only=false
tag=handout-tools
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"

kube_version=$(go_version "$root/tools/kubernetes" k8s.io/kubernetes)
helm_version=$(go_version "$root" helm.sh/helm/v4)
[[ $(go_version "$root/tools/helm" helm.sh/helm/v4) == "$helm_version" ]] ||
  die "tools/helm pins helm.sh/helm/v4 $(go_version "$root/tools/helm" helm.sh/helm/v4), the main module $helm_version: pin the main module's in tools/helm/go.mod"

build kubectl "$kube_version" "$root/tools/kubernetes" k8s.io/kubernetes/cmd/kubectl "$(kube_ldflags "$kube_version")"
# With the lab's flags (no -trimpath), so that what helm shares with the lab binary is
# compiled once; the version as Helm's own release build sets it.
build helm "$helm_version" "$root/tools/helm" helm.sh/helm/v4/cmd/helm \
  "-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" same-as-lab

tools=$bin/handout-tools
mkdir -p "$tools"
ln -sfn "$bin/kubectl-$kube_version" "$tools/kubectl"
ln -sfn "$bin/helm-$helm_version" "$tools/helm"
say "egresslab: building ./cmd/egresslab (seconds when bin/egresslab is built)"
(cd "$root" && go build -o "$tools/egresslab" ./cmd/egresslab)
say "kubectl $("$tools/kubectl" version --client -o json | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -1), helm $("$tools/helm" version --short) in $tools"
echo "EGRESSLAB_HANDOUT_TOOLS=$tools"
