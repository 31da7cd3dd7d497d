package manifest

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	sigsyaml "sigs.k8s.io/yaml"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/validation/agent"

	"github.com/egresslab/egresslab/manifests"
)

// Outbound traffic policy modes, as meshConfig.outboundTrafficPolicy.mode spells them.
const (
	RegistryOnly = "REGISTRY_ONLY"
	AllowAny     = "ALLOW_ANY"
	// AllowAnyDynamicDNS is ALLOW_ANY whose unknown plain-HTTP calls go to a dynamic
	// forward proxy cluster that resolves the request's Host itself.
	AllowAnyDynamicDNS = "ALLOW_ANY_DYNAMIC_DNS"
)

// Modes are the outbound traffic policy modes a lab can install.
var Modes = []string{RegistryOnly, AllowAny, AllowAnyDynamicDNS}

// MeshValues are the Helm values for Istio's istiod chart, and the mesh config they
// produce. The kind backend hands Values to Helm; sim hands Mesh to Istio's config
// generator: one file, the same mesh on both.
type MeshValues struct {
	Source string
	Values map[string]any
	Mesh   *meshconfig.MeshConfig
}

// LoadMeshValues reads the project's Istio values (manifests.IstioValues).
func LoadMeshValues() (MeshValues, error) {
	data, err := fs.ReadFile(manifests.FS, manifests.IstioValues)
	if err != nil {
		return MeshValues{}, fmt.Errorf("read %s: %w", manifests.IstioValues, err)
	}
	return ParseMeshValues("manifests/"+manifests.IstioValues, data)
}

// ParseMeshValues reads Helm values and builds the mesh config from their meshConfig
// section on top of Istio's defaults, as istiod does with its mesh ConfigMap.
func ParseMeshValues(source string, data []byte) (MeshValues, error) {
	var values map[string]any
	if err := sigsyaml.Unmarshal(data, &values); err != nil {
		return MeshValues{}, &Error{File: source, Reason: "not valid YAML: " + err.Error(),
			Fix: "the file holds Helm values for the istiod chart, a YAML mapping"}
	}
	if values == nil {
		values = map[string]any{}
	}
	mv := MeshValues{Source: source, Values: values}
	if err := mv.rebuild(); err != nil {
		return MeshValues{}, err
	}
	return mv, nil
}

func (mv *MeshValues) rebuild() error {
	section, _ := mv.Values["meshConfig"].(map[string]any)
	raw, err := sigsyaml.Marshal(section)
	if err != nil {
		return fmt.Errorf("encode meshConfig of %s: %w", mv.Source, err)
	}
	// Istio's reader ignores unknown fields; a misspelt one must not vanish silently.
	if js, err := sigsyaml.YAMLToJSON(raw); err == nil && section != nil {
		if err := protojson.Unmarshal(js, &meshconfig.MeshConfig{}); err != nil {
			return &Error{File: mv.Source, Object: "meshConfig", Reason: "Istio cannot read it: " + err.Error(),
				Fix: "check the field names under meshConfig against Istio's MeshConfig reference"}
		}
	}
	m, err := mesh.ApplyMeshConfigDefaults(string(raw))
	if err != nil {
		return &Error{File: mv.Source, Object: "meshConfig", Reason: "Istio cannot read it: " + err.Error(),
			Fix: "check the field names under meshConfig against Istio's MeshConfig reference"}
	}
	if _, err := agent.ValidateMeshConfig(m); err != nil {
		return &Error{File: mv.Source, Object: "meshConfig", Reason: IstioRejects + err.Error(),
			Fix: "correct the field Istio names under meshConfig"}
	}
	mv.Mesh = m
	return nil
}

// OutboundMode is meshConfig.outboundTrafficPolicy.mode: REGISTRY_ONLY, ALLOW_ANY or ALLOW_ANY_DYNAMIC_DNS.
func (mv MeshValues) OutboundMode() string {
	return mv.Mesh.GetOutboundTrafficPolicy().GetMode().String()
}

// MeshConfigYAML is the meshConfig section as written in the values, for showing.
func (mv MeshValues) MeshConfigYAML() string {
	out, _ := sigsyaml.Marshal(map[string]any{"meshConfig": mv.Values["meshConfig"]})
	return string(out)
}

// WithOutboundMode returns a copy whose values (and so mesh config) use another mode.
func (mv MeshValues) WithOutboundMode(mode string) (MeshValues, error) {
	if !slices.Contains(Modes, mode) {
		return MeshValues{}, fmt.Errorf("outbound traffic policy mode %q: use one of %s", mode, strings.Join(Modes, ", "))
	}
	raw, err := sigsyaml.Marshal(mv.Values)
	if err != nil {
		return MeshValues{}, fmt.Errorf("copy values of %s: %w", mv.Source, err)
	}
	var values map[string]any
	if err := sigsyaml.Unmarshal(raw, &values); err != nil {
		return MeshValues{}, fmt.Errorf("copy values of %s: %w", mv.Source, err)
	}
	section, _ := values["meshConfig"].(map[string]any)
	if section == nil {
		section = map[string]any{}
		values["meshConfig"] = section
	}
	section["outboundTrafficPolicy"] = map[string]any{"mode": mode}
	out := MeshValues{Source: mv.Source + " (outboundTrafficPolicy.mode=" + mode + ")", Values: values}
	if err := out.rebuild(); err != nil {
		return MeshValues{}, err
	}
	return out, nil
}
