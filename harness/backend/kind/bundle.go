package kind

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/cluster"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/istioinstall"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/mirror"
)

// WriteBundle writes a bundle to path: Istio's charts and images at the release the run
// installs, fetched as an online run fetches them (Istio's chart repository or
// EGRESSLAB_ISTIO_CHARTS; docker.io or EGRESSLAB_REGISTRY_MIRROR), or, for Istio built
// from source, from what from names. With the bundle given (EGRESSLAB_BUNDLE), a kind
// run downloads and pulls nothing from the internet. It says what it wrote.
func (p *Provider) WriteBundle(ctx context.Context, path string, from backend.BundleSource) (_ string, err error) {
	w := p.o.progress
	if p.o.bundle != "" {
		return "", fmt.Errorf("%s is set: a bundle is written from Istio's repository and registry (or their mirrors), not from another bundle", EnvBundle)
	}
	if err := from.Check(); err != nil {
		return "", err
	}
	src, err := p.downloads()
	if err != nil {
		return "", err
	}
	version := p.o.istioVersion
	work, err := os.MkdirTemp(filepath.Dir(path), ".egresslab-bundle-")
	if err != nil {
		return "", fmt.Errorf("write bundle %s: %w", path, err)
	}
	defer os.RemoveAll(work)

	charts := map[string]string{}
	for _, chartName := range []string{istioinstall.BaseChart, istioinstall.IstiodChart} {
		var archive string
		if from.IstioSource != "" {
			done := step(w, "package chart "+chartName+" "+version+" from "+from.IstioSource+" as Istio's release does")
			archive, err = istioinstall.PackageRelease(istioinstall.Charts(from.IstioSource)[chartName], version, work)
			done(err)
		} else {
			done := step(w, "download chart "+chartName+" "+version+" from "+src.charts)
			archive, err = istioinstall.Download(ctx, src.charts, filepath.Join(work, "helm"), chartName, version)
			done(err)
		}
		if err != nil {
			return "", err
		}
		charts[chartName] = archive
	}

	images := map[string]v1.Image{}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	refs := istioinstall.BundleImages(version)
	nodeImage := ""
	if from.DockerArchive == "" {
		// kind's node image too, pulled by its digest, saved under its tag.
		nodeImage = p.o.nodeImage
		refs = append(refs, nodeImage)
	}
	for _, ref := range refs {
		var img v1.Image
		if from.DockerArchive != "" {
			tag, err := name.NewTag(ref)
			if err != nil {
				return "", err
			}
			img, err = tarball.ImageFromPath(from.DockerArchive, &tag)
			if err != nil {
				return "", fmt.Errorf("read image %s from %s: %w", ref, from.DockerArchive, err)
			}
		} else {
			pull, err := pullRef(ref, src.mirror)
			if err != nil {
				return "", err
			}
			done := step(w, "pull "+ref+" ("+platform.String()+") from "+pull.Context().RegistryStr())
			img, err = remote.Image(pull, remote.WithContext(ctx), remote.WithPlatform(platform), remote.WithAuthFromKeychain(authn.DefaultKeychain))
			if err == nil {
				// Read the layers now, so that a failure is this step's.
				_, err = img.Manifest()
			}
			done(err)
			if err != nil {
				return "", fmt.Errorf("pull %s from %s: %w", ref, src.pullsFrom(nil), err)
			}
		}
		images[withoutDigest(ref)] = img
	}
	done := step(w, "write bundle "+path)
	err = mirror.Write(path, version, charts, images, withoutDigest(nodeImage), w)
	done(err)
	if err != nil {
		return "", err
	}
	size := int64(0)
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	node := ""
	if nodeImage != "" {
		node = ", and the kind node image " + withoutDigest(nodeImage)
	}
	return fmt.Sprintf("wrote %s (%d MB): Istio %s's charts %s and images %s%s; give it to a kind run with %s=%s",
		path, size>>20, version, strings.Join([]string{istioinstall.BaseChart, istioinstall.IstiodChart}, ", "),
		strings.Join(istioinstall.BundleImages(version), ", "), node, EnvBundle, path), nil
}

// withoutDigest is an image reference without its digest: a bundle names images by tag
// (kind's node image is pinned by digest, and pulled so).
func withoutDigest(ref string) string {
	tag, _, _ := strings.Cut(ref, "@")
	return tag
}

// loadNodeImage gives the container runtime on this machine the bundle's kind node
// image (docker load), unless it has it, and runs the cluster on it: kind then pulls
// nothing either.
func (p *Provider) loadNodeImage(ctx context.Context, b *mirror.Bundle) error {
	if b.NodeImage == "" || p.o.nodeImage != cluster.NodeImage {
		return nil // none in the bundle, or another node image asked for
	}
	tag := withoutDigest(p.o.nodeImage)
	if cluster.HasImage(ctx, p.o.runtime, tag) {
		p.o.nodeImage = tag
		return nil
	}
	done := step(p.o.progress, "load the kind node image "+tag+" from the bundle")
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(b.WriteDockerArchive(tag, pw)) }()
	err := cluster.LoadArchive(ctx, p.o.runtime, pr)
	_ = pr.Close()
	done(err)
	if err == nil {
		p.o.nodeImage = tag
	}
	return err
}

// pullRef is where ref (an image on docker.io) is pulled from: docker.io, or the same
// repository and tag on the mirror (as containerd asks a mirror: /v2/istio/pilot/...).
func pullRef(ref, mirrorURL string) (name.Reference, error) {
	if mirrorURL == "" {
		return name.ParseReference(ref)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	host := strings.TrimPrefix(strings.TrimPrefix(mirrorURL, "https://"), "http://")
	var opts []name.Option
	if strings.HasPrefix(mirrorURL, "http://") {
		opts = append(opts, name.Insecure)
	}
	sep := ":"
	if _, isDigest := r.(name.Digest); isDigest {
		sep = "@"
	}
	return name.ParseReference(host+"/"+r.Context().RepositoryStr()+sep+r.Identifier(), opts...)
}

var _ backend.Bundler = (*Provider)(nil)
