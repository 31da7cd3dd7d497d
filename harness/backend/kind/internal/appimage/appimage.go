// Package appimage builds an app of apps/ as a container image in process: `go build`
// of the app as a static Linux binary, put as the only program in an image made
// from nothing (go-containerregistry's empty.Image), written as a `docker save`-style
// tarball that kind loads into its nodes. No Dockerfile, no Docker build, no base image
// to pull: the lab needs the image on the node, never in a registry.
package appimage

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

// App is an app of apps/ and how its image runs it.
type App struct {
	Name       string
	Package    string // its Go package
	Tag        string // the image's tag, which manifests name (imagePullPolicy: Never)
	Entrypoint string // where the binary lives in the image
	Cmd        []string
	User       string
}

var (
	// Client is the client app every call is made from (labs/apps/client.yaml). It
	// runs as neither root nor 1337, which is the sidecar's own UID and is exempt from
	// traffic capture (a call made as 1337 would bypass the sidecar).
	Client = App{Name: "client", Package: "github.com/egresslab/egresslab/apps/client", Tag: "egresslab/client:dev",
		Entrypoint: "/client", Cmd: []string{"serve", "--listen=:8080"}, User: "65532:65532"}
	// Internet is the stand-in internet of offline runs. It runs as root to answer on
	// ports 80 and 443, outside the mesh.
	Internet = App{Name: "internet", Package: "github.com/egresslab/egresslab/apps/internet", Tag: "egresslab/internet:dev",
		Entrypoint: "/internet", User: "0:0"}
)

// DigestAnnotation is put on the pod template of a Deployment that runs an app with
// the image's digest, so that a rebuilt image rolls the pods and an unchanged one does
// not.
const DigestAnnotation = "egresslab.dev/client-image"

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
// instead of the first of the usual places that exists. The roots let `client call
// https://...` verify servers when the mesh lets it out.
func WithCABundle(path string) Option { return func(o *options) { o.caBundle = &path } }

// Build compiles the app for linux/arch and writes its image to a tarball in outDir.
func Build(ctx context.Context, app App, arch, outDir string, opts ...Option) (*Built, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	bin := filepath.Join(outDir, app.Name+"-linux-"+arch)
	if err := GoBuild(ctx, app.Package, arch, bin); err != nil {
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
	img, err := Image(app, bin, arch, ca)
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("digest of image %s: %w", app.Tag, err)
	}
	tag, err := name.NewTag(app.Tag)
	if err != nil {
		return nil, fmt.Errorf("image tag %s: %w", app.Tag, err)
	}
	path := filepath.Join(outDir, app.Name+"-image-"+arch+".tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return nil, fmt.Errorf("write image %s to %s: %w", app.Tag, path, err)
	}
	return &Built{Image: img, Digest: digest, Arch: arch, Tarball: path, CABundle: ca}, nil
}

// GoBuild compiles the package into out: static (CGO_ENABLED=0, so it needs no libc in
// an image that has none), for linux/arch, reproducible (-trimpath, no build ID), so
// the same source gives the same image digest. It runs in the current directory, which
// must be inside the egresslab module (as under `go test`, `go run` or make).
func GoBuild(ctx context.Context, pkg, arch, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for linux/%s: %w\n%s", pkg, arch, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Image is the app's image: one layer holding the binary (and trusted roots when
// caBundle is not ""), on nothing.
func Image(app App, binary, arch, caBundle string) (v1.Image, error) {
	files := []file{{path: strings.TrimPrefix(app.Entrypoint, "/"), src: binary, mode: 0o755}}
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
	cfg.Config.Entrypoint = []string{app.Entrypoint}
	cfg.Config.Cmd = app.Cmd
	// PATH=/ lets `kubectl exec ... -- client call URL` find the binary by name.
	cfg.Config.Env = []string{"PATH=/"}
	cfg.Config.User = app.User
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.source": "https://github.com/egresslab/egresslab/tree/main/apps/" + app.Name}
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
