#!/usr/bin/env bash
# make e2e-offline: the kind backend on this machine with nothing pulled or downloaded
# but Go modules and Debian packages. As root on Linux:
#
#   1. the project's own Docker engine (hack/docker-engine.sh), unless it runs already;
#   2. the images, built from source or reused (hack/kind-offline-images.sh);
#   3. the kind backend's offline test (TestOfflineKindCluster): a kind cluster through
#      kind's library, Istio REGISTRY_ONLY installed through the online code path from
#      the bundle (its chart repository and its registry mirror of docker.io, with the
#      servers' logs and the kubelet's events as evidence), the stand-in internet and
#      offline DNS, the client with its istio-proxy ready (the real
#      pilot-agent running the stand-in for Envoy), and nothing reaching past the machine;
#   4. the scenarios on that cluster (go test ./scenarios/... -backend=kind), no lab step skipped;
#   5. propagation on that cluster: 10 apply/delete cycles of the lab's entry
#      (BenchmarkOfflinePropagation: p50 and max, each way);
#   6. every handout typed by hand on that cluster (TestHandoutsByHand): real kubectl
#      and helm (hack/handout-tools.sh), Istio's charts from the bundle's repository,
#      Istio's curl sample image through the bundle's registry mirror;
#   7. the lab on that cluster (make lab-serviceentry ARGS="-backend=kind -show-config"),
#      which keeps it, then the workshop's next lab on the kept cluster, timed.
#
# At the end (pass, failure or Ctrl-C) the cluster is deleted (KEEP=1 keeps it, and the
# engine with it) and the engine it started is stopped; it then checks that no dockerd,
# container, bridge or mount of the run is left.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${EGRESSLAB_BIN:-$root/.cache/bin}
check_only=false
tag=e2e-offline
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"
cd "$root"

[[ $(id -u) -eq 0 ]] || die "the offline kind run needs root (it runs its own Docker engine); use make e2e for Docker you already have"
keep=${KEEP:-}
engine_was_running=false
hack/docker-engine.sh status >/dev/null 2>&1 && engine_was_running=true
run_dir=${EGRESSLAB_DOCKER_RUN:-/run/egresslab-docker}
log=$(mktemp -t egresslab-e2e-offline.XXXXXX)
engine_pid=

finish() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n ${DOCKER_HOST:-} && -z $keep ]]; then
    # The test deletes its cluster; after a Ctrl-C or a crash, this makes sure.
    local containers; containers=$(docker ps -aq --filter label=io.x-k8s.kind.cluster 2>/dev/null || true)
    if [[ -n $containers ]]; then
      say "removing containers the run left: $(echo $containers)"
      docker rm -f -v $containers >/dev/null || true
    fi
  fi
  if ! $engine_was_running && [[ -z $keep ]]; then
    hack/docker-engine.sh stop || rc=1
    # Nothing of the run may be left: check by PID, name, address, rule and mount table.
    local left
    if [[ -n $engine_pid ]] && kill -0 "$engine_pid" 2>/dev/null; then left="dockerd (PID $engine_pid) "; fi
    left+=$(hack/docker-engine.sh leftovers | xargs -d '\n' echo) || true
    if [[ -n ${left// /} ]]; then
      say "error: left behind: $left"; rc=1
    else
      say "nothing of the run is left: no dockerd, container, bridge, rule or mount"
    fi
  elif [[ -n $keep ]]; then
    say "KEEP=1: the cluster and the engine are kept (DOCKER_HOST=$DOCKER_HOST); hack/docker-engine.sh stop ends both"
  fi
  rm -f "$log"
  say "finished in $(($(date +%s) - start_time))s, exit $rc"
  exit "$rc"
}
trap finish EXIT
trap 'say "interrupted: cleaning up"; exit 130' INT TERM

say "1/7 the project's Docker engine"
eval "export $(hack/docker-engine.sh start | grep '^DOCKER_HOST=')"
engine_pid=$(cat "$run_dir/dockerd.pid")

say "2/7 the offline images and the bundle (built from source the first time, reused after)"
t0=$(date +%s)
images_out=$(hack/kind-offline-images.sh)
eval "export $(grep '^EGRESSLAB_KIND_OFFLINE=' <<<"$images_out")"
eval "export $(grep '^EGRESSLAB_BUNDLE=' <<<"$images_out")"
say "images ready in $(($(date +%s) - t0))s: $EGRESSLAB_KIND_OFFLINE, $EGRESSLAB_BUNDLE"

# run WHAT KEEP CMD...: one phase on the cluster, timed. tee ignores Ctrl-C: were it to
# die first, the command's next progress line would meet a closed pipe, and SIGPIPE
# would kill it before it deletes its cluster. Every phase but the last keeps the
# cluster for the next.
run() {
  local what=$1 keep_it=$2 t0 rc; shift 2
  t0=$(date +%s)
  set +e
  EGRESSLAB_KEEP=$keep_it "$@" 2>&1 | (trap '' INT; tee "$log")
  rc=${PIPESTATUS[0]}
  set -e
  say "$what took $(($(date +%s) - t0))s"
  ((rc == 0)) || die "$what failed (exit $rc); diagnostics, when saved, are named above"
}

say "3/7 kind cluster, Istio, the stand-in internet, the injected client (TestOfflineKindCluster)"
run "the cluster check" 1 go test ./harness/backend/kind/ -run '^TestOfflineKindCluster$' -count=1 -v -timeout 40m

say "4/7 the scenarios on the offline cluster"
run "the scenarios" 1 go test ./scenarios/... -skip '^TestHandoutsByHand$' -count=1 -v -timeout 30m -args -backend=kind -require-backend
# Every call of every lab runs on the offline cluster: a step skipped there (a call the
# stand-in or the kind backend cannot make) is a failure of this run, not a pass.
if grep -E -- '--- SKIP: TestLabs' "$log"; then
  die "lab steps skipped on the offline cluster (above): every call of every lab must run there"
fi

say "5/7 propagation of the lab's entry, 10 apply/delete cycles"
run "the propagation benchmark" 1 go test ./harness/backend/kind/ -run '^$' -bench '^BenchmarkOfflinePropagation$' -benchtime 10x -count=1
grep -q 'p50-ms/apply' "$log" || die "the propagation benchmark reported no figures"

say "6/7 the handouts, typed by hand on the offline cluster"
tools_out=$(hack/handout-tools.sh)
eval "export $(grep '^EGRESSLAB_HANDOUT_TOOLS=' <<<"$tools_out")"
run "the handouts typed by hand" 1 go test ./scenarios/ -run '^TestHandoutsByHand$' -count=1 -v -timeout 40m \
  -args -backend=kind -require-backend -handout-tools="$EGRESSLAB_HANDOUT_TOOLS"
grep -q -- '--- PASS: TestHandoutsByHand/handouts_typed_by_hand/' "$log" && ! grep -q -- '--- SKIP: TestHandoutsByHand' "$log" ||
  die "the handouts' test skipped on the offline cluster"

say "7/7 the lab on the offline cluster"
# A lab keeps its cluster by default; the workshop's next lab reuses it.
run "the lab" 1 make --no-print-directory lab-serviceentry ARGS="-backend=kind -show-config"
grep -q 'cluster_name: outbound|80||jsonplaceholder.typicode.com' "$log" ||
  die "the lab passed but the sidecar's config dump it showed names no outbound|80||jsonplaceholder.typicode.com"
# The next lab of a workshop on the cluster the first one kept, cleared of what it left
# (the figure README quotes); deleted at the end unless KEEP=1.
run "a second lab (blocked-how) on the kept cluster" "$([[ -n $keep ]] && echo 1 || echo 0)" \
  make --no-print-directory lab LAB=blocked-how ARGS="-backend=kind"
grep -q 'reusing kind cluster egresslab' "$log" || die "the second lab did not reuse the kept cluster"
say "the scenarios and the lab passed on an offline kind cluster"
