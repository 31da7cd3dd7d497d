#!/usr/bin/env bash
# Builds, from source and Debian's packages only, every image the offline kind run needs,
# into the Docker engine DOCKER_HOST names (hack/docker-engine.sh start gives it):
#
#   egresslab.local/kind-base     a Debian root filesystem (debootstrap) with systemd,
#                                 iptables, containerd, runc and the CNI plugins
#   registry.k8s.io/...           the images `kubeadm config images list` of the pinned
#                                 Kubernetes asks for, at exactly those tags: kube-apiserver,
#                                 kube-controller-manager, kube-scheduler, kube-proxy (from
#                                 tools/kubernetes), etcd (tools/etcd), coredns
#                                 (tools/coredns), pause (hack/kind-offline/pause)
#   docker.io/istio/pilot:V       pilot-discovery and pilot-agent from the main module's
#   docker.io/istio/proxyv2:V     istio.io/istio, named and tagged as Istio publishes its
#                                 release V (istioinstall.Version); proxyv2's Envoy is
#                                 egresslab's stand-in (apps/envoy-standin: no Envoy can
#                                 be had here)
#   egresslab.local/kind-node     the kind node: kind's own base files (the kind module's
#                                 images/base/files), kubelet, kubeadm, kubectl, and the
#                                 Kubernetes images above pre-imported into its containerd,
#                                 as kind's pkg/build/nodeimage does with the images it pulls
#
#   docker.io/curlimages/curl:V   the image of Istio's curl sample (the handouts' by-hand
#                                 client): the Debian base, whose curl is Debian's
#
# and a bundle, as `egresslab bundle` writes one online: Istio's two images, the curl
# sample's, and Istio's charts packaged from the module as Istio's release packages them. The kind run serves
# it as the chart repository and the registry mirror of docker.io, so that Istio is
# installed through the online code path (chart download, image pulls), and pulls
# Istio's images from it: they are not in the node image.
#
# Each image carries a label with the hash of its inputs: a rerun reuses what is there
# and builds only what changed. Nothing is pulled: every Dockerfile starts FROM scratch
# or FROM the base built here, and the legacy builder never pulls an image it has.
#
# Prints, on stdout, EGRESSLAB_KIND_OFFLINE=<file> (a JSON file naming the node image,
# which the kind backend reads) and EGRESSLAB_BUNDLE=<file>.
#
# Settings: EGRESSLAB_BIN (default .cache/bin: the built binaries), EGRESSLAB_OFFLINE_DIR
# (default .cache/kind-offline: the root filesystem tarball, build contexts, the JSON).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${EGRESSLAB_BIN:-$root/.cache/bin}
out=${EGRESSLAB_OFFLINE_DIR:-$root/.cache/kind-offline}
check_only=false
tag=kind-offline-images
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"

[[ -n ${DOCKER_HOST:-} ]] || die "DOCKER_HOST is not set: start the project's engine first (eval \"\$(hack/docker-engine.sh start)\")"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers at DOCKER_HOST=$DOCKER_HOST"
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
mkdir -p "$out" "$bin"
# Everything temporary lives under one folder, gone at exit however the script ends
# (Ctrl-C included), with the build container if one runs.
work=$(mktemp -d "$out/work.XXXXXX")
cid=
on_exit() {
  if [[ -n $cid ]]; then docker rm -f -v "$cid" >/dev/null 2>&1 || true; fi
  umount -R "$work/rootfs/proc" "$work/rootfs/sys" 2>/dev/null || true # debootstrap mounts them
  rm -rf "$work"
}
trap on_exit EXIT
trap 'say "interrupted"; exit 130' INT TERM
export DOCKER_BUILDKIT=0 # the legacy builder: no BuildKit image to pull, and FROM a local image never pulls

kube_version=$(go_version "$root/tools/kubernetes" k8s.io/kubernetes)
etcd_module_version=$(go_version "$root/tools/etcd" go.etcd.io/etcd/server/v3)
coredns_module_version=$(go_version "$root/tools/coredns" github.com/coredns/coredns)
istio_version=$(go_version "$root" istio.io/istio)
kind_dir=$(cd "$root" && go list -m -f '{{.Dir}}' sigs.k8s.io/kind)
istio_dir=$(cd "$root" && go list -m -f '{{.Dir}}' istio.io/istio)
suite=bookworm
mirror=http://deb.debian.org/debian
# The release the kind backend installs, and so the tag its charts' values name.
istio_release=$(sed -n 's/^\tVersion = "\(.*\)"$/\1/p' "$root/harness/backend/kind/internal/istioinstall/istioinstall.go")
[[ -n $istio_release ]] || die "found no Version in harness/backend/kind/internal/istioinstall/istioinstall.go"
hub=docker.io/istio
istio_tag=$istio_release
# The image of Istio's curl sample, which the handouts' by-hand client runs.
curl_image=$(sed -n 's/^const CurlSampleImage = "\(.*\)"$/\1/p' "$root/harness/backend/kind/internal/istioinstall/release.go")
[[ -n $curl_image ]] || die "found no CurlSampleImage in harness/backend/kind/internal/istioinstall/release.go"

# hash_of FILE...: one hash of the files' contents and names (the inputs of an image).
hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
# image_has IMAGE HASH: IMAGE exists and was built from inputs of that hash.
image_has() { [[ $(docker image inspect -f '{{index .Config.Labels "egresslab.inputs"}}' "$1" 2>/dev/null) == "$2" ]]; }
# quiet_build TAG CONTEXT: docker build, whose output (and the legacy builder's
# deprecation notice) shows only when it fails.
quiet_build() {
  local o
  o=$(docker build -q -t "$1" "$2" 2>&1) || { printf '%s\n' "$o" >&2; return 1; }
}
# timed WHAT CMD...: run CMD, saying WHAT and how long it took.
timed() {
  local what=$1 t0; shift; t0=$(date +%s)
  say "$what ..."
  "$@"
  say "$what: done in $(($(date +%s) - t0))s"
}

# --- binaries -----------------------------------------------------------------------
kld=$(kube_ldflags "$kube_version")
for b in kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  build "$b" "$kube_version" "$root/tools/kubernetes" "k8s.io/kubernetes/cmd/$b" "$kld"
done
build etcd "$etcd_module_version" "$root/tools/etcd" go.etcd.io/etcd/server/v3 "-s -w"
# CoreDNS's plugin list is ours (tools/coredns/main.go): its hash is part of the version.
coredns_build="$coredns_module_version-$(cd "$root" && hash_of tools/coredns/main.go tools/coredns/go.sum | cut -c1-8)"
build coredns "$coredns_build" "$root/tools/coredns" . "-s -w"
pause_version=$(cd "$root" && hash_of hack/kind-offline/pause/main.go) # no module version of its own: its source's hash
build pause "$pause_version" "$root" ./hack/kind-offline/pause "-s -w"
ild=$(istio_ldflags "$istio_version")
build pilot-discovery "$istio_version" "$root" istio.io/istio/pilot/cmd/pilot-discovery "$ild" same-as-lab
build pilot-agent "$istio_version" "$root" istio.io/istio/pilot/cmd/pilot-agent "$ild" same-as-lab
# The stand-in for the Envoy process is egresslab's own code: its version is the hash
# of the main module's packages it is built from (and go.sum).
standin_version=$(cd "$root" && mapfile -t dirs < <(go list -deps -f '{{with .Module}}{{if .Main}}{{$.Dir}}{{end}}{{end}}' ./apps/envoy-standin) &&
  hash_of go.sum $(find "${dirs[@]}" -maxdepth 1 -name '*.go' ! -name '*_test.go' | sort))
build envoy-standin "$standin_version" "$root" ./apps/envoy-standin "" same-as-lab

# The tags kubeadm asks for, from the kubeadm just built (as kind's nodeimage does).
mapfile -t wanted < <("$bin/kubeadm-$kube_version" config images list --kubernetes-version "$kube_version" 2>/dev/null)
((${#wanted[@]} >= 6)) || die "kubeadm config images list gave: ${wanted[*]}"
image_for() { printf '%s\n' "${wanted[@]}" | grep -E "/$1:" || die "kubeadm asks for no $1 image"; }
etcd_image=$(image_for etcd)
etcd_tag=${etcd_image##*:}
[[ v${etcd_tag%-*} == "$etcd_module_version" ]] ||
  die "kubeadm $kube_version asks for $etcd_image but tools/etcd pins $etcd_module_version: pin etcd v${etcd_tag%-*} there"
coredns_image=$(image_for coredns)
[[ ${coredns_image##*:} == "$coredns_module_version" ]] ||
  die "kubeadm $kube_version asks for $coredns_image but tools/coredns pins $coredns_module_version: pin that version there"
pause_image=$(image_for pause)

# --- the Debian base ------------------------------------------------------------------
# kind's base image installs these on Debian (images/base/Dockerfile) and builds
# containerd, runc and the CNI plugins from source; here Debian's own packages give them.
# curl too, as kind's base has it; here it is also the handouts' curl sample image's curl.
packages=systemd,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins
base_hash=$(echo "$suite $mirror $packages" | sha256sum | cut -c1-16)
base=egresslab.local/kind-base:$base_hash
rootfs=$out/rootfs-$base_hash.tar
if ! image_has "$base" "$base_hash"; then
  if [[ ! -s $rootfs ]]; then
    if ! command -v debootstrap >/dev/null; then
      say "installing Debian's debootstrap"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2
    fi
    tmp=$work/rootfs
    timed "debootstrap $suite ($packages)" \
      debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror" >&2
    # Debian's containerd and docker packages start services on install: not in an image.
    rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
    tar -C "$tmp" --numeric-owner -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$rootfs"
    rm -rf "$tmp"
  fi
  timed "import the Debian base as $base" \
    docker import --change "LABEL egresslab.inputs=$base_hash" --change 'CMD ["/bin/bash"]' "$rootfs" "$base" >/dev/null
fi

# --- component images -------------------------------------------------------------------
# image NAME FROM ENTRYPOINT USER FILE...: docker build NAME from FROM with the files
# copied to /usr/local/bin (or to their own path, given as SRC=DEST), run as USER (""
# for root), reused when its inputs match.
image() {
  local name=$1 from=$2 entrypoint=$3 user=$4; shift 4
  local ctx; ctx=$(mktemp -d "$work/ctx.XXXXXX")
  local dockerfile="FROM $from"$'\n'
  local f src dest
  for f in "$@"; do
    src=${f%%=*}; dest=/usr/local/bin/$(basename "$src")
    [[ $f == *=* ]] && dest=${f#*=}
    cp "$src" "$ctx/$(basename "$src")"
    dockerfile+="COPY $(basename "$src") $dest"$'\n'
  done
  dockerfile+="ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"$'\n'
  [[ -n $entrypoint ]] && dockerfile+="ENTRYPOINT $entrypoint"$'\n'
  [[ -n $user ]] && dockerfile+="USER $user"$'\n'
  printf '%s' "$dockerfile" >"$ctx/Dockerfile"
  local h; h=$(cd "$ctx" && hash_of ./* <(echo "$from"))
  if image_has "$name" "$h"; then
    say "$name: reusing (inputs $h)"
  else
    echo "LABEL egresslab.inputs=$h" >>"$ctx/Dockerfile"
    timed "build $name" quiet_build "$name" "$ctx"
  fi
  rm -rf "$ctx"
}

for c in kube-apiserver kube-controller-manager kube-scheduler; do
  image "$(image_for "$c")" "$base" "" "" "$bin/$c-$kube_version=/usr/local/bin/$c"
done
# kube-proxy runs iptables and conntrack: the Debian base has them.
image "$(image_for kube-proxy)" "$base" "" "" "$bin/kube-proxy-$kube_version=/usr/local/bin/kube-proxy"
image "$etcd_image" "$base" "" "" "$bin/etcd-$etcd_module_version=/usr/local/bin/etcd"
image "$coredns_image" "$base" '["/coredns"]' "" "$bin/coredns-$coredns_build=/coredns"
image "$pause_image" scratch '["/pause"]' "" "$bin/pause-$pause_version=/pause"
# The stand-in internet's CA, made once: it signs the site's certificate, and proxyv2
# trusts it (in the image's CA bundle, which pilot-agent serves as "file-root:system" for
# the TLS a sidecar originates), as a real proxy image trusts the public roots that
# signed the real site's.
ca_dir=$out/internet-ca
command -v openssl >/dev/null || { apt-get update -qq >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >&2; }
if [[ ! -s $ca_dir/ca.crt || ! -s $ca_dir/ca.key ]]; then
  mkdir -p "$ca_dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=egresslab stand-in internet CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign" -keyout "$ca_dir/ca.key.tmp" -out "$ca_dir/ca.crt.tmp" 2>/dev/null ||
    die "openssl could not make the stand-in internet's CA"
  mv "$ca_dir/ca.key.tmp" "$ca_dir/ca.key"; mv "$ca_dir/ca.crt.tmp" "$ca_dir/ca.crt"
  say "made the stand-in internet's CA in $ca_dir"
fi
trust=$work/ca-certificates.crt
docker run --rm --entrypoint cat "$base" /etc/ssl/certs/ca-certificates.crt >"$trust" ||
  die "read the Debian base's CA bundle"
cat "$ca_dir/ca.crt" >>"$trust"
# istiod's chart runs it with runAsNonRoot: Istio's own image is USER 1337, as here.
image "$hub/pilot:$istio_tag" "$base" '["/usr/local/bin/pilot-discovery"]' 1337:1337 "$bin/pilot-discovery-$istio_version=/usr/local/bin/pilot-discovery"
# pilot-agent reads Envoy's bootstrap template from there and starts Envoy from
# /usr/local/bin/envoy, which is the stand-in (no Envoy can be had here); istio-init
# runs `pilot-agent istio-iptables` with the base's iptables.
image "$hub/proxyv2:$istio_tag" "$base" '["/usr/local/bin/pilot-agent"]' "" \
  "$bin/pilot-agent-$istio_version=/usr/local/bin/pilot-agent" \
  "$bin/envoy-standin-$standin_version=/usr/local/bin/envoy" \
  "$istio_dir/tools/packaging/common/envoy_bootstrap.json=/var/lib/istio/envoy/envoy_bootstrap_tmpl.json" \
  "$trust=/etc/ssl/certs/ca-certificates.crt"

# Istio's curl sample runs this image with /bin/sleep and is exec'ed into for curl:
# Debian's curl (the real image's is Alpine's, of another version: the handouts show only
# what both print, the status code and curl's exit code) trusting the stand-in
# internet's CA as the real one trusts the public roots; as the real one, not root.
image "$curl_image" "$base" '["curl"]' 100:101 "$trust=/etc/ssl/certs/ca-certificates.crt"

# --- the node image -----------------------------------------------------------------------
# Istio's images are not pre-imported: the nodes pull them through the bundle's mirror.
preload=("${wanted[@]}")
node=egresslab.local/kind-node:$kube_version
ctx=$(mktemp -d "$work/ctx.XXXXXX")
cp -r "$kind_dir/images/base/files" "$ctx/files"
chmod -R u+w "$ctx/files"
for b in kubelet kubeadm kubectl; do cp "$bin/$b-$kube_version" "$ctx/$b"; done
echo "$kube_version" >"$ctx/version"
# One node, kind's default pod subnet: a plain bridge (kind's own CNI, kindnetd, is an
# image from a registry; the cluster is created with disableDefaultCNI).
cat >"$ctx/10-egresslab.conflist" <<'EOF'
{
  "cniVersion": "0.4.0",
  "name": "egresslab",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
# kind reads this when it installs storage; its own provisioner is an image from a
# registry, so here it is the host-path class kind falls back to.
cat >"$ctx/default-storage.yaml" <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
EOF
cat >"$ctx/Dockerfile" <<EOF
FROM $base
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY kubelet kubeadm kubectl /usr/bin/
COPY version /kind/version
COPY default-storage.yaml /kind/manifests/default-storage.yaml
COPY 10-egresslab.conflist /etc/cni/net.d/10-egresslab.conflist
# As kind's base image does (images/base/Dockerfile), with Debian's containerd, runc and
# CNI plugins where kind puts the ones it builds; the pause image kubeadm asks for; and
# oom_score_adj kept at containerd's own: lowering it takes CAP_SYS_RESOURCE, which a
# VM's bounding set can lack (this one's does), and runc then fails every pod sandbox
# with "can't get final child's PID from pipe" (nsexec: oom_score_adj: Permission denied).
RUN chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/* \\
    && ln -sf /usr/bin/containerd /usr/local/bin/containerd \\
    && ln -sf /usr/bin/containerd-shim-runc-v2 /usr/local/bin/containerd-shim-runc-v2 \\
    && ln -sf /usr/bin/ctr /usr/local/bin/ctr \\
    && mkdir -p /opt/cni && rm -rf /opt/cni/bin && ln -s /usr/lib/cni /opt/cni/bin \\
    && sed -i 's|sandbox_image = .*|sandbox_image = "$pause_image"|' /etc/containerd/config.toml \\
    && sed -i 's|restrict_oom_score_adj = false|restrict_oom_score_adj = true|' /etc/containerd/config.toml \\
    && ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
       | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
    && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
       /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
       /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
    && ln -sf /lib/systemd/systemd /sbin/init \\
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \\
    && systemctl mask systemd-binfmt.service \\
    && mkdir -p /etc/kubernetes/manifests
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
image_ids=$(for i in "${preload[@]}"; do docker image inspect -f '{{.Id}}' "$i"; done)
node_hash=$(cd "$ctx" && find . -type f | sort | xargs sha256sum | cat - <(echo "$base $image_ids") | sha256sum | cut -c1-16)
if image_has "$node" "$node_hash"; then
  say "$node: reusing (inputs $node_hash)"
else
  pre=egresslab.local/kind-node-pre:$node_hash
  timed "build the node's file system" quiet_build "$pre" "$ctx"
  # Pre-import every image into the node's containerd, as kind's nodeimage does: start
  # containerd in a build container, import, stop it, commit.
  cid=$(docker run -d --privileged --entrypoint sleep "$pre" infinity)
  docker exec "$cid" bash -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &'
  for i in $(seq 1 30); do docker exec "$cid" ctr version >/dev/null 2>&1 && break; sleep 1; done
  docker exec "$cid" ctr version >/dev/null || die "containerd did not start in the build container: $(docker exec "$cid" cat /var/log/containerd-build.log | tail -5)"
  for i in "${preload[@]}"; do
    timed "import $i into the node's containerd" \
      bash -c 'docker save "$1" | docker exec -i "$2" ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests - >/dev/null' _ "$i" "$cid"
  done
  docker exec "$cid" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' >&2
  docker exec "$cid" pkill containerd || true
  sleep 1
  timed "commit $node" docker commit \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
    --change "LABEL egresslab.inputs=$node_hash" "$cid" "$node" >/dev/null
  docker rm -f -v "$cid" >/dev/null; cid=
  docker rmi "$pre" >/dev/null || true
fi
# Images of older inputs lost their tags to the new ones: their layers go.
docker image prune -f --filter label=egresslab.inputs >/dev/null

jq -n --arg node "$node" --arg kube "$kube_version" --arg cert "$ca_dir/ca.crt" --arg key "$ca_dir/ca.key" \
  '{nodeImage: $node, kubernetesVersion: $kube, internetCA: {cert: $cert, key: $key}}' >"$out/images.json"

# --- the bundle ---------------------------------------------------------------------------
# What `egresslab bundle` writes online, from what was built here: the images as Istio
# publishes them, the charts packaged from the module as Istio's release packages them.
bundle=$out/istio-$istio_release.bundle
egresslab=$root/bin/egresslab
make -s -C "$root" bin/egresslab >&2
bundle_hash=$(for i in "$hub/pilot:$istio_tag" "$hub/proxyv2:$istio_tag" "$curl_image"; do docker image inspect -f '{{.Id}}' "$i"; done |
  cat - <(echo "$istio_dir") "$egresslab" | sha256sum | cut -c1-16)
if [[ -s $bundle && $(cat "$bundle.inputs" 2>/dev/null) == "$bundle_hash" ]]; then
  say "$bundle: reusing (inputs $bundle_hash)"
else
  rm -f "$bundle" "$bundle.inputs"
  timed "docker save Istio's images" docker save -o "$work/istio-images.tar" "$hub/pilot:$istio_tag" "$hub/proxyv2:$istio_tag" "$curl_image"
  timed "write the bundle $bundle" "$egresslab" bundle -istio-source "$istio_dir" -images "$work/istio-images.tar" "$bundle" >&2
  echo "$bundle_hash" >"$bundle.inputs"
fi
say "images ready; disk used by the engine: $(du -sh "${EGRESSLAB_DOCKER_DIR:-$root/.cache/docker}" 2>/dev/null | cut -f1); bundle $(du -h "$bundle" | cut -f1)"
echo "EGRESSLAB_KIND_OFFLINE=$out/images.json"
echo "EGRESSLAB_BUNDLE=$bundle"
