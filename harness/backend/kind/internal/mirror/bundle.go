// Package mirror is the far end of what a kind run downloads, served from a workshop
// bundle: a Helm chart repository holding Istio's charts (on loopback, for Helm in this
// process) and a registry mirror of docker.io holding Istio's images (on the kind
// network's gateway, for the nodes' containerd). A bundle is one file, written once on a
// good network by `egresslab bundle` and handed to a room, or offline by
// hack/kind-offline-images.sh from images built from source. The kind backend reads a
// bundle the same way whichever way it was filled: it downloads the charts and pulls the
// images through the same code as an online run, only from these two servers.
package mirror

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	repo "helm.sh/helm/v4/pkg/repo/v1"
)

// Registry is the one registry a bundle mirrors: Istio's images are on Docker Hub.
const Registry = name.DefaultRegistry // "index.docker.io", which containerd calls docker.io

// The bundle's layout: a manifest, a Helm chart repository, an OCI image layout.
const (
	manifestFile = "bundle.json"
	chartsDir    = "charts"
	imagesDir    = "images"
)

// Contents is bundle.json: what the bundle holds.
type Contents struct {
	// Istio is the Istio release the charts and images are of.
	Istio string `json:"istio"`
	// Charts maps a chart's name to its archive's file name in the chart repository.
	Charts map[string]string `json:"charts"`
	// Images are the images' references (docker.io/istio/pilot:1.31.0).
	Images []string `json:"images"`
	// NodeImage is the kind node image among Images, "" when the bundle has none (a
	// bundle of Istio built from source: the offline run builds its own node).
	NodeImage string `json:"nodeImage,omitempty"`
}

// Write writes a bundle to path: the chart archives (chart name → a .tgz Helm packaged)
// as a Helm chart repository with its index, and the images as an OCI image layout
// tagged with their references. It writes a temporary file beside path and renames it,
// so path is whole or absent.
// nodeImage, when not "", is the reference among images that is the kind node image.
func Write(path, istio string, charts map[string]string, images map[string]v1.Image, nodeImage string, progress io.Writer) (err error) {
	if progress == nil {
		progress = io.Discard
	}
	work, err := os.MkdirTemp(filepath.Dir(path), ".bundle-")
	if err != nil {
		return fmt.Errorf("write bundle %s: %w", path, err)
	}
	defer os.RemoveAll(work)
	c := Contents{Istio: istio, Charts: map[string]string{}}
	if err := os.MkdirAll(filepath.Join(work, chartsDir), 0o755); err != nil {
		return fmt.Errorf("write bundle %s: %w", path, err)
	}
	for _, chartName := range sortedKeys(charts) {
		// Named as Istio's repository names them: Helm's own cache names a download by
		// its digest. Istio's charts are versioned with the release.
		archive, file := charts[chartName], fmt.Sprintf("%s-%s.tgz", chartName, istio)
		c.Charts[chartName] = file
		if err := copyFile(archive, filepath.Join(work, chartsDir, file)); err != nil {
			return fmt.Errorf("write bundle %s: chart %s: %w", path, chartName, err)
		}
	}
	index, err := repo.IndexDirectory(filepath.Join(work, chartsDir), "")
	if err != nil {
		return fmt.Errorf("write bundle %s: index the charts: %w", path, err)
	}
	if err := index.WriteFile(filepath.Join(work, chartsDir, "index.yaml"), 0o644); err != nil {
		return fmt.Errorf("write bundle %s: index the charts: %w", path, err)
	}
	lp, err := layout.Write(filepath.Join(work, imagesDir), empty.Index)
	if err != nil {
		return fmt.Errorf("write bundle %s: image layout: %w", path, err)
	}
	for _, ref := range sortedKeys(images) {
		r, err := name.ParseReference(ref)
		if err != nil {
			return fmt.Errorf("write bundle %s: image %q: %w", path, ref, err)
		}
		if r.Context().RegistryStr() != Registry {
			return fmt.Errorf("write bundle %s: image %s is not on docker.io, the one registry a bundle mirrors", path, ref)
		}
		fmt.Fprintf(progress, "  adding image %s\n", ref)
		if err := lp.AppendImage(images[ref], layout.WithAnnotations(map[string]string{refAnnotation: r.Name()})); err != nil {
			return fmt.Errorf("write bundle %s: image %s: %w", path, ref, err)
		}
		c.Images = append(c.Images, r.Name())
		if ref == nodeImage {
			c.NodeImage = r.Name()
		}
	}
	raw, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, manifestFile), raw, 0o644); err != nil {
		return fmt.Errorf("write bundle %s: %w", path, err)
	}
	tmp := filepath.Join(work, "bundle.tar")
	if err := tarFolder(work, tmp, "bundle.tar"); err != nil {
		return fmt.Errorf("write bundle %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write bundle %s: %w", path, err)
	}
	return nil
}

// refAnnotation names an image in an OCI layout's index (the OCI image spec's
// annotation; go-containerregistry and containerd write and read the same).
const refAnnotation = "org.opencontainers.image.ref.name"

// Bundle is a bundle unpacked into a folder.
type Bundle struct {
	Contents
	// File is the bundle's file; Dir the folder it was unpacked into.
	File, Dir string
}

// Open unpacks the bundle at path into dir (which it creates) and checks that it holds
// what bundle.json says. Its errors name the file and what to do.
func Open(path, dir string) (*Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open bundle %s: %w (egresslab bundle FILE writes one)", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("open bundle %s: not a regular file (egresslab bundle FILE writes one)", path)
	}
	if err := untar(f, dir); err != nil {
		return nil, fmt.Errorf("open bundle %s: %w (is it a file egresslab bundle wrote?)", path, err)
	}
	b := &Bundle{File: path, Dir: dir}
	raw, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return nil, fmt.Errorf("open bundle %s: it has no %s (is it a file egresslab bundle wrote?)", path, manifestFile)
	}
	if err := json.Unmarshal(raw, &b.Contents); err != nil {
		return nil, fmt.Errorf("open bundle %s: %s: %w", path, manifestFile, err)
	}
	var errs []error
	if b.Istio == "" {
		errs = append(errs, fmt.Errorf("bundle %s: %s names no Istio release", path, manifestFile))
	}
	for chartName, archive := range b.Charts {
		if _, err := os.Stat(filepath.Join(dir, chartsDir, archive)); err != nil {
			errs = append(errs, fmt.Errorf("bundle %s: chart %s: %s is missing", path, chartName, archive))
		}
	}
	if _, err := layout.FromPath(filepath.Join(dir, imagesDir)); err != nil {
		errs = append(errs, fmt.Errorf("bundle %s: its images: %w", path, err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w (write the bundle again with egresslab bundle)", err)
	}
	return b, nil
}

// WriteDockerArchive writes the image ref of the bundle to w as `docker save` does, for
// `docker load`: the kind node image goes to the container runtime on this machine,
// not to a node.
func (b *Bundle) WriteDockerArchive(ref string, w io.Writer) error {
	r, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image %s of bundle %s: %w", ref, b.File, err)
	}
	idx, err := layout.ImageIndexFromPath(filepath.Join(b.Dir, imagesDir))
	if err != nil {
		return fmt.Errorf("image %s of bundle %s: %w", ref, b.File, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("image %s of bundle %s: %w", ref, b.File, err)
	}
	for _, desc := range im.Manifests {
		if desc.Annotations[refAnnotation] != r.Name() {
			continue
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return fmt.Errorf("image %s of bundle %s: %w", ref, b.File, err)
		}
		return tarball.Write(r, img, w)
	}
	return fmt.Errorf("bundle %s has no image %s", b.File, ref)
}

// HasImage says whether the bundle holds the image ref (any spelling of it).
func (b *Bundle) HasImage(ref string) bool {
	r, err := name.ParseReference(ref)
	return err == nil && slices.Contains(b.Images, r.Name())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tarFolder writes the files under dir (but skip, its own output) into a tar at out.
func tarFolder(dir, out, skip string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir || d.Name() == skip {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = io.Copy(tw, in)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// untar unpacks a bundle's tar into dir: folders and regular files only, every name
// inside dir.
func untar(r io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if rel, err := filepath.Rel(dir, p); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%s lies outside the bundle", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s is neither a file nor a folder", h.Name)
		}
	}
}
