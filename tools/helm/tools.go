//go:build tools

// Package tools pins the helm command's module; hack/handout-tools.sh builds it.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
