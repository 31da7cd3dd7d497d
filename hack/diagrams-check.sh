#!/usr/bin/env bash
# Renders every ```mermaid block of the handouts (labs/*/README.md, or the files given)
# with real Mermaid in real headless Chromium, as a forge shows them: in an 890 px text
# column, scaled down to fit it, with Mermaid's theme "default" and "dark". Fails, naming
# the handout, the block and the text, when Mermaid cannot parse a block, when a text
# renders under 11 px (its font size times the SVG's scale on the page), or when a text's
# contrast against its box's fill is under 4.5 (hack/diagrams/render.mjs does the
# rendering and the measuring). Prints the smallest text it saw.
#
#   hack/diagrams-check.sh [--screenshots DIR] [--verbose] [HANDOUT.md...]
#
# Installs what it needs when it is missing:
#   - Debian's chromium (/usr/bin/chromium), with apt-get: this needs root, as on the
#     project's machines and CI; elsewhere install it first, or set CHROMIUM to a Chromium;
#   - @mermaid-js/mermaid-cli and mermaid, pinned by hack/diagrams/package-lock.json, with
#     npm ci into .cache/mermaid (PUPPETEER_SKIP_DOWNLOAD=1: puppeteer drives Debian's
#     Chromium, and downloads no browser of its own).
# Needs no network but Debian's packages and the npm registry, and only for the install.
# Leaves no Chromium behind: the browser is closed on exit, Ctrl-C included, and killed
# by its process id if it outlives the renderer.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${EGRESSLAB_MERMAID:-$root/.cache/mermaid}
chromium=${CHROMIUM:-/usr/bin/chromium}
start_time=$(date +%s)
say() { printf '[diagrams +%ss] %s\n' "$(($(date +%s) - start_time))" "$*" >&2; }
die() { say "error: $*"; exit 1; }

args=() files=()
while (($#)); do
  case $1 in
    --screenshots) args+=("$1" "$2"); shift 2 ;;
    --verbose) args+=("$1"); shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) files+=("$1"); shift ;;
  esac
done
if ((${#files[@]} == 0)); then
  cd "$root"
  shopt -s nullglob
  files=(labs/*/README.md)
  ((${#files[@]})) || die "no handouts in $root/labs/*/README.md"
fi

command -v node >/dev/null || die "node is not installed (Node.js 20 or later)"
command -v npm >/dev/null || die "npm is not installed"

# Chromium, from Debian's packages.
if [[ ! -x $chromium ]]; then
  [[ $chromium == /usr/bin/chromium ]] || die "CHROMIUM=$chromium is not an executable"
  [[ $(id -u) == 0 ]] || die "Debian's chromium is not installed, and installing it needs root: run 'apt-get install -y --no-install-recommends chromium' as root, or set CHROMIUM"
  say "installing Debian's chromium with apt-get, as root (a minute or two)"
  t0=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends chromium >&2
  say "chromium installed in $(($(date +%s) - t0))s"
fi
say "$("$chromium" --version 2>/dev/null | head -1)"

# Mermaid and puppeteer, from the npm registry, as the lockfile pins them.
lock=$root/hack/diagrams/package-lock.json
if ! cmp -s "$lock" "$cache/package-lock.json" || [[ ! -d $cache/node_modules/mermaid || ! -d $cache/node_modules/puppeteer ]]; then
  say "installing hack/diagrams/package.json's packages (npm ci) into $cache"
  t0=$(date +%s)
  rm -rf "$cache"
  mkdir -p "$cache"
  cp "$root/hack/diagrams/package.json" "$lock" "$cache/"
  (cd "$cache" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2) ||
    { rm -f "$cache/package-lock.json"; die "npm ci failed"; }
  say "packages installed in $(($(date +%s) - t0))s"
fi

# One renderer, one browser, one fresh profile; all of them gone on exit.
work=$(mktemp -d "${TMPDIR:-/tmp}/diagrams-check.XXXXXX")
node_pid=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n $node_pid ]] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$node_pid" 2>/dev/null || true
  fi
  # Puppeteer starts Chromium as the leader of a process group of its own: end the group.
  if [[ -s $work/chromium.pid ]]; then
    local pid; pid=$(<"$work/chromium.pid")
    if kill -0 "$pid" 2>/dev/null; then
      say "making sure Chromium (process group $pid) is gone"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      sleep 0.5
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

say "rendering the diagrams of ${#files[@]} handout(s)"
node "$root/hack/diagrams/render.mjs" --modules "$cache/node_modules" --chromium "$chromium" \
  --user-data-dir "$work/profile" --pid-file "$work/chromium.pid" "${args[@]}" "${files[@]}" &
node_pid=$!
rc=0
wait "$node_pid" || rc=$?
node_pid=
case $rc in
  0) say "every diagram passed" ;;
  1) say "FAILED: see the FAIL lines above" ;;
  *) say "the renderer stopped (exit code $rc)" ;;
esac
exit "$rc"
