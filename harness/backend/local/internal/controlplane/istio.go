package controlplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	meshconfig "istio.io/api/mesh/v1alpha1"
	istiomanifests "istio.io/istio/manifests"
	"istio.io/istio/pkg/util/protomarshal"

	"github.com/egresslab/egresslab/harness/manifest"
)

// CRDFile is Istio's own file of every CRD it serves, as its base chart installs it,
// read from the istio.io/istio module the program is built with.
const CRDFile = "charts/base/files/crd-all.gen.yaml"

// CRDs reads Istio's CRDs from CRDFile.
func CRDs() ([]*apiextv1.CustomResourceDefinition, error) {
	data, err := fs.ReadFile(istiomanifests.FS, CRDFile)
	if err != nil {
		return nil, fmt.Errorf("read Istio's CRDs (%s in istio.io/istio/manifests): %w", CRDFile, err)
	}
	reader := kubeyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*apiextv1.CustomResourceDefinition
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read Istio's CRDs: %w", err)
		}
		crd := &apiextv1.CustomResourceDefinition{}
		if err := sigsyaml.Unmarshal(doc, crd); err != nil {
			return nil, fmt.Errorf("read Istio's CRDs: %w", err)
		}
		if crd.Kind == "CustomResourceDefinition" {
			out = append(out, crd)
		}
	}
}

// installCRDs creates Istio's CRDs and waits until the API server serves them all.
func (cp *ControlPlane) installCRDs(ctx context.Context) error {
	t0 := time.Now()
	crds, err := CRDs()
	if err != nil {
		return err
	}
	client, err := apiextclient.NewForConfig(cp.RESTConfig)
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil &&
			!apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		for {
			got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err == nil && established(got) {
				break
			}
			if time.Since(t0) > 60*time.Second {
				return fmt.Errorf("CRD %s not established after 60s (%v)", crd.Name, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("install Istio's CRDs: %w", context.Cause(ctx))
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	cp.logf("applied Istio's %d CRDs (%s) in %s", len(crds), CRDFile, time.Since(t0).Round(10*time.Millisecond))
	return nil
}

func established(crd *apiextv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
			return true
		}
	}
	return false
}

// writeMesh writes the mesh config as istiod reads it from --meshConfig: the full
// config, with Istio's defaults applied as manifest.MeshValues did, so that istiod
// and the sim backend see the very same mesh. Written whole and renamed into place,
// so istiod's file watcher never reads half a file.
func writeMesh(path string, mv manifest.MeshValues) error {
	y, err := protomarshal.ToYAML(mv.Mesh)
	if err != nil {
		return fmt.Errorf("encode the mesh config from %s: %w", mv.Source, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(y), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Mesh is the mesh config istiod is using now, from its /debug/mesh.
func (cp *ControlPlane) Mesh(ctx context.Context) (*meshconfig.MeshConfig, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cp.DebugAddress+"/debug/mesh", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read istiod's mesh config: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read istiod's mesh config: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read istiod's mesh config: %s %s", resp.Status, body)
	}
	m := &meshconfig.MeshConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("read istiod's mesh config: %w", err)
	}
	return m, nil
}

// SetMesh rewrites istiod's mesh config file and waits until istiod runs with it (its
// file watcher reloads it, and istiod then pushes new config to every sidecar).
func (cp *ControlPlane) SetMesh(ctx context.Context, mv manifest.MeshValues) error {
	if mv.Mesh == nil {
		return errors.New("set mesh: values carry no mesh config")
	}
	t0 := time.Now()
	if err := writeMesh(cp.meshFile, mv); err != nil {
		return err
	}
	for {
		m, err := cp.Mesh(ctx)
		if err == nil && sameMesh(m, mv.Mesh) {
			cp.logf("istiod runs with the mesh config of %s after %s", mv.Source, time.Since(t0).Round(10*time.Millisecond))
			return nil
		}
		if time.Since(t0) > 30*time.Second {
			if err == nil {
				err = fmt.Errorf("it still runs with outboundTrafficPolicy %s", m.GetOutboundTrafficPolicy().GetMode())
			}
			return fmt.Errorf("istiod did not load the mesh config of %s within 30s: %w", mv.Source, err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sameMesh compares what the lab sets in the mesh config; istiod fills in fields of
// its own (its trust domain, root namespace, ...) that the file does not decide.
func sameMesh(running, want *meshconfig.MeshConfig) bool {
	return proto.Equal(running, want) ||
		running.GetOutboundTrafficPolicy().GetMode() == want.GetOutboundTrafficPolicy().GetMode() &&
			running.GetAccessLogFile() == want.GetAccessLogFile()
}
