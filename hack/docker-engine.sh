#!/usr/bin/env bash
# Gives egresslab a Docker engine of its own on a Linux machine with none answering: the
# offline kind backend runs on it. It never touches a user's Docker: its own data root,
# exec root, pidfile and socket, its own address pools, and no default bridge (docker0).
#
#   hack/docker-engine.sh start    install Debian's docker.io if dockerd is missing (root),
#                                  start the engine, wait until it answers, and print
#                                  DOCKER_HOST=unix://... on stdout (the harness reads it)
#   hack/docker-engine.sh stop     stop it by its PID, with its containerd and shims, and
#                                  take its firewall rule away; images stay (--purge: all)
#   hack/docker-engine.sh status   say whether it runs
#   hack/docker-engine.sh env      print DOCKER_HOST=... when it runs, else exit 1
#   hack/docker-engine.sh leftovers  print what of the engine is still there (a dockerd or
#                                  shim on its socket, a bridge in its pool, its firewall
#                                  rules, mounts under its folders); exit 1 if anything
#
# Two things this machine (a VM) needs that a laptop does not:
#   - Its capability bounding set lacks CAP_SYS_RESOURCE, and a privileged container (a
#     kind node) asks for every capability: runc then fails with "unable to apply caps:
#     operation not permitted". When the bounding set lacks any capability, the engine
#     runs containers through a wrapper that deletes the missing ones from the OCI spec
#     (config.json on create/run, the --process file on exec) and then execs runc.
#   - Nothing may leave the machine: a rule in Docker's DOCKER-USER chain rejects
#     forwarded traffic from the engine's networks to anything outside them, so a
#     container's (or a pod's) attempt to reach out fails at once, locally.
#
# Settings: EGRESSLAB_DOCKER_DIR (default .cache/docker: the image store, kept between
# runs), EGRESSLAB_DOCKER_RUN (default /run/egresslab-docker: socket, pidfile, exec root;
# short, because a unix socket path may not pass 108 bytes).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${EGRESSLAB_DOCKER_DIR:-$root/.cache/docker}
run=${EGRESSLAB_DOCKER_RUN:-/run/egresslab-docker}
sock=$run/docker.sock
pidfile=$run/dockerd.pid
log=$dir/dockerd.log
# The engine's networks (kind's "kind" network among them) come from this pool; the
# firewall rule names it. 10.213.0.0/16 is rarely used by anything else.
pool=10.213.0.0/16
wait_secs=60

start_time=$(date +%s)
say() { printf '[docker-engine +%ss] %s\n' "$(($(date +%s) - start_time))" "$*" >&2; }
die() { say "error: $*"; exit 1; }

running() {
  [[ -f $pidfile ]] || return 1
  local pid; pid=$(cat "$pidfile")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]
}

answers() { docker -H "unix://$sock" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# missing_caps lists the capabilities (CAP_...) a privileged container asks for that this
# kernel's bounding set does not hold.
missing_caps() {
  local bnd last i
  bnd=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  last=$(cat /proc/sys/kernel/cap_last_cap)
  for ((i = 0; i <= last; i++)); do
    if ((((bnd >> i) & 1) == 0)); then
      capsh --decode="$(printf '%x' $((1 << i)))" 2>/dev/null | sed 's/.*=//' | tr 'a-z' 'A-Z' | tr ',' '\n'
    fi
  done
}

# write_wrapper FILE CAP...: a runc that first deletes CAPs from the spec it is given.
write_wrapper() {
  local file=$1; shift
  local drop; drop=$(printf '"%s",' "$@"); drop="[${drop%,}]"
  cat >"$file" <<EOF
#!/bin/sh
# Written by hack/docker-engine.sh: this kernel's bounding set lacks $*, which a
# privileged container asks for; runc would fail to apply them. Delete them from the OCI
# spec (create/run: the bundle's config.json; exec: the --process file), then run runc.
drop='$drop'
strip() {
  jq --argjson drop "\$drop" 'walk(if type == "object" then with_entries(
      if (.key | IN("bounding", "effective", "inheritable", "permitted", "ambient")) and (.value | type == "array")
      then .value -= \$drop else . end) else . end)' "\$1" >"\$1.egresslab" && mv "\$1.egresslab" "\$1"
}
bundle= process= cmd= prev=
for a in "\$@"; do
  case "\$prev" in --bundle|-b) bundle=\$a ;; --process|-p) process=\$a ;; esac
  case "\$a" in
    --bundle=*) bundle=\${a#--bundle=} ;;
    --process=*) process=\${a#--process=} ;;
    create|run|exec) [ -z "\$cmd" ] && cmd=\$a ;;
  esac
  prev=\$a
done
case "\$cmd" in
  create|run) b=\${bundle:-.}; [ -f "\$b/config.json" ] && strip "\$b/config.json" ;;
  exec) [ -n "\$process" ] && [ -f "\$process" ] && strip "\$process" ;;
esac
exec runc "\$@"
EOF
  chmod 0755 "$file"
}

# firewall_on: the rules that keep the engine's containers on this machine. A TCP
# connection is reset and anything else gets port-unreachable, so an attempt fails at
# once: the kernel rate-limits the ICMP errors it sends (net.ipv4.icmp_ratelimit), and a
# connect whose ICMP error was held back waits for its next SYN retry, but resets are not
# limited. Inserted in reverse order: the TCP rule ends up first.
firewall_on() {
  iptables -I DOCKER-USER -s "$pool" ! -d "$pool" -m comment --comment egresslab-offline \
    -j REJECT --reject-with icmp-port-unreachable
  iptables -I DOCKER-USER -s "$pool" ! -d "$pool" -p tcp -m comment --comment egresslab-offline \
    -j REJECT --reject-with tcp-reset
}

# firewall_off removes every rule of the engine's, whichever version of this script made it.
firewall_off() {
  local rule
  while rule=$(iptables -S DOCKER-USER 2>/dev/null | grep -m1 -- '--comment egresslab-offline'); do
    eval "iptables ${rule/-A DOCKER-USER/-D DOCKER-USER}"
  done
}

start() {
  if running; then
    answers || die "dockerd (PID $(cat "$pidfile")) runs but does not answer on $sock; stop it: $0 stop"
    say "already running (PID $(cat "$pidfile"))"
    echo "DOCKER_HOST=unix://$sock"
    return
  fi
  [[ $(id -u) -eq 0 ]] || die "the project's own Docker engine needs root (namespaces, cgroups, iptables); run as root, or start Docker yourself"
  if ! command -v dockerd >/dev/null || ! command -v jq >/dev/null || ! command -v capsh >/dev/null; then
    command -v apt-get >/dev/null || die "no dockerd here, and no apt-get to install Debian's docker.io with"
    say "installing Debian's docker.io, jq and libcap2-bin with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends docker.io jq libcap2-bin iptables >&2
    # The package starts a system dockerd on /var/run/docker.sock: that one is not ours.
    if command -v systemctl >/dev/null && systemctl is-active --quiet docker 2>/dev/null; then
      systemctl disable --now docker docker.socket >&2 || true
    fi
  fi
  mkdir -p "$dir/data" "$run/exec"
  local args=(--data-root "$dir/data" --exec-root "$run/exec" --pidfile "$pidfile" -H "unix://$sock"
    --bridge none --default-address-pool "base=$pool,size=24" --log-level warn
    # Names resolve locally or not at all: the containers' DNS server (Docker's embedded
    # one) asks no server outside the machine, and one that is not there fails at once.
    --dns 127.0.0.1)
  local missing; mapfile -t missing < <(missing_caps)
  if ((${#missing[@]})); then
    write_wrapper "$run/runc-egresslab" "${missing[@]}"
    args+=(--add-runtime "egresslab=$run/runc-egresslab" --default-runtime egresslab)
    say "the kernel's bounding set lacks ${missing[*]}: containers run through $run/runc-egresslab"
  fi
  trap 'say "start failed; stopping what was started"; stop >/dev/null 2>&1 || true' ERR
  say "starting dockerd ($(dockerd --version)) on $sock, data in $dir/data"
  setsid dockerd "${args[@]}" >>"$log" 2>&1 </dev/null &
  local i
  for ((i = 0; i < wait_secs * 2; i++)); do
    answers && break
    kill -0 $! 2>/dev/null || { tail -20 "$log" >&2; die "dockerd exited; its log: $log"; }
    sleep 0.5
    ((i % 20 == 19)) && say "waiting for dockerd to answer"
  done
  answers || { tail -20 "$log" >&2; die "dockerd did not answer within ${wait_secs}s; its log: $log"; }
  firewall_on
  trap - ERR
  say "dockerd answers (PID $(cat "$pidfile")); forwarded traffic from $pool to anywhere else is rejected"
  echo "DOCKER_HOST=unix://$sock"
}

stop() {
  local purge=${1:-}
  local bridges=()
  if running; then
    local pid; pid=$(cat "$pidfile")
    # Its containers' shims are children of its containerd, which is its child.
    local kids; kids=$(pgrep -P "$pid" || true)
    # A user-defined network's bridge (br-ID) outlives dockerd: note them to delete after.
    local id
    for id in $(docker -H "unix://$sock" network ls -q --filter driver=bridge 2>/dev/null || true); do
      bridges+=("br-${id:0:12}")
    done
    say "stopping dockerd (PID $pid)"
    kill -TERM "$pid"
    local i
    for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { say "dockerd did not stop in 30 s: killing it"; kill -KILL "$pid" || true; }
    for k in $kids; do pkill -KILL -P "$k" 2>/dev/null || true; kill -KILL "$k" 2>/dev/null || true; done
  fi
  firewall_off
  local b
  for b in "${bridges[@]}"; do ip link delete "$b" 2>/dev/null || true; done
  # Mounts dockerd left under its exec root or data root (overlay, netns) go with it.
  { grep -E " ($run|$dir)[/ ]" /proc/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$run"
  if [[ $purge == --purge ]]; then
    rm -rf "$dir"
    say "removed $dir"
  fi
  say "stopped"
}

leftovers() {
  local left=()
  if pgrep -f "dockerd.*$sock" >/dev/null; then left+=("dockerd on $sock (PIDs $(pgrep -f "dockerd.*$sock" | xargs))"); fi
  if pgrep -f "containerd-shim.*$run" >/dev/null; then left+=("containerd shims of the engine"); fi
  if ip -o -4 addr show 2>/dev/null | grep -q " inet ${pool%.*.*}\."; then left+=("a bridge in $pool"); fi
  if iptables -S DOCKER-USER 2>/dev/null | grep -q egresslab-offline; then left+=("its DOCKER-USER rules"); fi
  if grep -q -e " $run" -e " $dir/" /proc/mounts; then left+=("mounts under $run or $dir"); fi
  ((${#left[@]} == 0)) || { printf '%s\n' "${left[@]}"; return 1; }
}

case ${1:-} in
  start) start ;;
  leftovers) leftovers ;;
  stop) stop "${2:-}" ;;
  status) if running; then echo "running (PID $(cat "$pidfile")), DOCKER_HOST=unix://$sock"; else echo "not running"; exit 1; fi ;;
  env) running && answers && echo "DOCKER_HOST=unix://$sock" ;;
  *) echo "usage: $0 start|stop [--purge]|status|env|leftovers" >&2; exit 2 ;;
esac
