// Package clientimage builds the client app's container image in process: `go build`
// of apps/client as a static Linux binary, put as the only program in an image made
// from nothing (go-containerregistry's empty.Image), written as a `docker save`-style
// tarball that kind loads into its nodes. No Dockerfile, no Docker build, no base image
// to pull: the lab needs the image on the node, never in a registry.
package clientimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	// Tag is the image manifests/apps/client.yaml runs (imagePullPolicy: Never).
	Tag = "egresslab/client:dev"
	// Package is the client app's Go package.
	Package = "github.com/egresslab/egresslab/apps/client"
	// Entrypoint is where the binary lives in the image.
	Entrypoint = "/client"
	// DigestAnnotation is put on the client's pod template with the image's digest, so
	// that a rebuilt image rolls the pods and an unchanged one does not.
	DigestAnnotation = "egresslab.dev/client-image"
	// User runs the client: not root, and not 1337, which is the sidecar's own UID and is
	// exempt from traffic capture (a call made as 1337 would bypass the sidecar).
	User = "65532:65532"
)

// caBundles are where Linux distributions and macOS keep their trusted roots. The first
// that exists goes into the image so that `client call https://...` can verify servers
// when the mesh lets it out (ALLOW_ANY, or an entry for port 443).
var caBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",             // openSUSE
	"/etc/ssl/cert.pem",                  // macOS, FreeBSD
}

// Built is a built image.
type Built struct {
	Image   v1.Image
	Digest  v1.Hash
	Arch    string
	Tarball string // path of the `docker save`-style tarball
	// CABundle is the host file copied into the image, "" when none was found.
	CABundle string
}

// Option configures Build.
type Option func(*options)

type options struct {
	caBundle *string
}

// WithCABundle copies this file into the image as its trusted roots ("" for none),
// instead of the first of the usual places that exists.
func WithCABundle(path string) Option { return func(o *options) { o.caBundle = &path } }

// Build compiles the client for linux/arch and writes its image to a tarball in outDir.
func Build(ctx context.Context, arch, outDir string, opts ...Option) (*Built, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	bin := filepath.Join(outDir, "client-linux-"+arch)
	if err := GoBuild(ctx, arch, bin); err != nil {
		return nil, err
	}
	ca := ""
	if o.caBundle != nil {
		ca = *o.caBundle
	} else {
		for _, p := range caBundles {
			if _, err := os.Stat(p); err == nil {
				ca = p
				break
			}
		}
	}
	img, err := Image(bin, arch, ca)
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("digest of image %s: %w", Tag, err)
	}
	tag, err := name.NewTag(Tag)
	if err != nil {
		return nil, fmt.Errorf("image tag %s: %w", Tag, err)
	}
	path := filepath.Join(outDir, "client-image-"+arch+".tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return nil, fmt.Errorf("write image %s to %s: %w", Tag, path, err)
	}
	return &Built{Image: img, Digest: digest, Arch: arch, Tarball: path, CABundle: ca}, nil
}

// GoBuild compiles apps/client into out: static (CGO_ENABLED=0, so it needs no libc in
// an image that has none), for linux/arch, reproducible (-trimpath, no build ID), so
// the same source gives the same image digest. It runs in the current directory, which
// must be inside the egresslab module (as under `go test`, `go run` or make).
func GoBuild(ctx context.Context, arch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, Package)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for linux/%s: %w\n%s", Package, arch, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Image is the client image: one layer holding the binary (and trusted roots when
// caBundle is not ""), on nothing.
func Image(binary, arch, caBundle string) (v1.Image, error) {
	files := []file{{path: strings.TrimPrefix(Entrypoint, "/"), src: binary, mode: 0o755}}
	if caBundle != "" {
		files = append(files, file{path: "etc/ssl/certs/ca-certificates.crt", src: caBundle, mode: 0o644})
	}
	layerTar, err := tarOf(files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	cfg.Config.Entrypoint = []string{Entrypoint}
	cfg.Config.Cmd = []string{"serve", "--listen=:8080"}
	// PATH=/ lets `kubectl exec ... -- client call URL` find the binary by name.
	cfg.Config.Env = []string{"PATH=/"}
	cfg.Config.User = User
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.source": "https://github.com/egresslab/egresslab/tree/main/apps/client"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	return img, nil
}

type file struct {
	path, src string
	mode      int64
}

// tarOf writes the files into a layer with fixed owners and times, so that equal
// inputs give an equal layer digest.
func tarOf(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		for d := filepath.Dir(f.path); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range sortedByDepth(dirs) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("image layer: read %s: %w", f.src, err)
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.path, Mode: f.mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	return buf.Bytes(), nil
}

func sortedByDepth(dirs map[string]bool) []string {
	out := make([]string, 0, len(dirs))
	for d := range dirs {
		out = append(out, d)
	}
	// Parents first: fewer slashes first, then by name for a stable order.
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			ci, cj := strings.Count(out[i], "/"), strings.Count(out[j], "/")
			if cj < ci || (cj == ci && out[j] < out[i]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
