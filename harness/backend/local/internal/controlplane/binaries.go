package controlplane

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// KubeVersion is the kube-apiserver the local control plane runs: the one Kubernetes
// version tools/kubernetes/go.mod pins for the whole project (a test checks the two agree).
const KubeVersion = "v1.35.8"

// istioModuleVersion is the istio.io/istio version of the main module, for binaries
// that carry no build information (go.mod is the source of truth; a test checks it).
const istioModuleVersion = "v0.0.0-20260827124520-eed52ebb66ad"

// BuildCommand builds the binaries into the cache folder, reusing what is there.
const BuildCommand = "hack/controlplane-binaries.sh"

// RequireEnv, when set (CI sets it after building the binaries), makes the tests that
// need the binaries fail instead of skip when they are missing.
const RequireEnv = "EGRESSLAB_REQUIRE_LOCAL"

// IstioVersion is the istio.io/istio module version this program was built with: the
// istiod binary must be built from the same one.
func IstioVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "istio.io/istio" {
				if d.Replace != nil {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return istioModuleVersion
}

// Binaries are the paths of the three programs the local control plane runs.
type Binaries struct {
	Etcd          string
	KubeAPIServer string
	Istiod        string
}

// BinDirEnv names another folder than .cache/bin for the binaries; the script reads it
// too. The backend's config carries it (local.Config.BinDir).
const BinDirEnv = "EGRESSLAB_BIN"

// DefaultBinDir is where hack/controlplane-binaries.sh puts the binaries by default:
// .cache/bin at the root of the egresslab checkout the current directory is in.
func DefaultBinDir() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "bin"), nil
}

// FindBinaries looks the binaries up in dir (DefaultBinDir when ""), each under its
// versioned name; etcd may also come from PATH. The error says what is missing and how
// to build it.
func FindBinaries(dir string) (Binaries, error) {
	if dir == "" {
		var err error
		if dir, err = DefaultBinDir(); err != nil {
			return Binaries{}, fmt.Errorf("%w; build the binaries with %s or set %s", err, BuildCommand, BinDirEnv)
		}
	}
	var missing []string
	find := func(name string) string {
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p
		}
		missing = append(missing, p)
		return ""
	}
	b := Binaries{
		Etcd:          find("etcd"),
		KubeAPIServer: find("kube-apiserver-" + KubeVersion),
		Istiod:        find("pilot-discovery-" + IstioVersion()),
	}
	if b.Etcd == "" {
		if p, err := exec.LookPath("etcd"); err == nil {
			b.Etcd = p
			missing = missing[1:]
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("local control plane binaries missing: %s; build them with %s (etcd from Debian's etcd-server, or built from source without root, "+
			"kube-apiserver %s and istiod %s from the Go module proxy)", strings.Join(missing, ", "), BuildCommand, KubeVersion, IstioVersion())
	}
	return b, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// repoRoot walks up from the current directory to the egresslab module's root.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && firstLine(string(data)) == "module github.com/egresslab/egresslab" {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the egresslab checkout (no go.mod of github.com/egresslab/egresslab above the current directory)")
		}
		dir = parent
	}
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "//") {
			return l
		}
	}
	return ""
}
