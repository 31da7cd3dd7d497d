package dataplane

import (
	corev1 "k8s.io/api/core/v1"
)

// Injection says whether Istio's injection webhooks, as istiod's chart registers them,
// give a pod in namespace ns with these labels an istio-proxy sidecar, and why (or why
// not). The rules are the default webhook's (istio-injection on the namespace,
// sidecar.istio.io/inject on the pod) and the revision webhook's (istio.io/rev):
//   - the pod label sidecar.istio.io/inject=false always opts out;
//   - istio-injection=disabled on the namespace opts it out;
//   - istio-injection=enabled, or an istio.io/rev label, on the namespace opts it in;
//   - otherwise sidecar.istio.io/inject=true (or istio.io/rev) on the pod opts it in.
//
// sim and local apply these rules instead of running the webhook; the kind backend uses
// them to explain a pod that came up without its sidecar.
func Injection(ns *corev1.Namespace, podLabels map[string]string) (injected bool, why string) {
	podLabel := podLabels["sidecar.istio.io/inject"]
	nsLabel, nsRev := ns.Labels["istio-injection"], ns.Labels["istio.io/rev"]
	switch {
	case podLabel == "false":
		return false, "the pod is labelled sidecar.istio.io/inject=false; remove the label from the Deployment's pod template"
	case nsLabel == "disabled":
		return false, "namespace " + ns.Name + " is labelled istio-injection=disabled; label it istio-injection=enabled"
	case nsLabel == "enabled":
		return true, "namespace " + ns.Name + " is labelled istio-injection=enabled, so the injector adds istio-proxy"
	case nsRev != "":
		return true, "namespace " + ns.Name + " is labelled istio.io/rev=" + nsRev + ", so that revision's injector adds istio-proxy"
	case podLabel == "true":
		return true, "the pod is labelled sidecar.istio.io/inject=true, so the injector adds istio-proxy"
	case podLabels["istio.io/rev"] != "":
		return true, "the pod is labelled istio.io/rev=" + podLabels["istio.io/rev"] + ", so that revision's injector adds istio-proxy"
	}
	return false, "namespace " + ns.Name + " is not labelled for injection; label it (kubectl label namespace " + ns.Name +
		" istio-injection=enabled)"
}
