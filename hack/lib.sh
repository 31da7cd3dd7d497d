# Shared by the hack/ scripts that build binaries: progress lines with elapsed time, and
# one way to build a Go binary into the cache folder, reused when it is there.
# Source it after setting: root (the checkout), bin (the cache folder), tag (the prefix
# of progress lines), check_only (true: build nothing, count what is missing).

start_time=${start_time:-$(date +%s)}
missing=${missing:-0}
say() { printf '[%s +%ss] %s\n' "$tag" "$(($(date +%s) - start_time))" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# go_version DIR MODULE: the version of MODULE that the Go module in DIR requires.
go_version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }

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
  say "$name $version: building $pkg (minutes when the Go build cache is cold)"
  local t0; t0=$(date +%s)
  mkdir -p "$bin"
  if [[ -n $same_as_lab ]]; then
    (cd "$dir" && go build -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  else
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  fi
  mv "$out.tmp" "$out"
  say "$name $version: built in $(($(date +%s) - t0))s -> $out"
}

# kube_ldflags VERSION: the flags Kubernetes' own build (hack/lib/version.sh) sets, so a
# binary reports VERSION (kubeadm reads its own to pick the images it asks for).
kube_ldflags() {
  local v=$1 minor flags="-s -w" p
  minor=$(echo "$v" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    flags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# istio_ldflags VERSION: the version istio.io/istio's binaries report.
istio_ldflags() {
  local v=$1 flags="-s -w"
  flags+=" -X istio.io/istio/pkg/version.buildVersion=$v"
  flags+=" -X istio.io/istio/pkg/version.buildGitRevision=${v##*-}"
  flags+=" -X istio.io/istio/pkg/version.buildStatus=Clean"
  flags+=" -X istio.io/istio/pkg/version.buildTag=$v"
  echo "$flags"
}
