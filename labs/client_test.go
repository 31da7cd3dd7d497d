package labs_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/labs"
)

// The client app deployed as another workload is named for it throughout: the backends
// exec into the container named for the workload, a Sidecar selects it by its app
// label and an AuthorizationPolicy by its service account. The image stays the client's.
func TestTheClientAppDeployedAsAnotherWorkloadIsNamedForIt(t *testing.T) {
	set, err := labs.ClientManifest(backend.Workload{Namespace: "payments", Name: "api"})
	require.NoError(t, err)
	var kinds []string
	for _, o := range set.Objects {
		kinds = append(kinds, o.Kind)
		switch obj := o.Kube.(type) {
		case *corev1.Namespace:
			assert.Equal(t, "payments", obj.Name)
			assert.Equal(t, "enabled", obj.Labels["istio-injection"])
		case *appsv1.Deployment:
			assert.Equal(t, "payments/api", obj.Namespace+"/"+obj.Name)
			assert.Equal(t, map[string]string{"app": "api"}, obj.Spec.Selector.MatchLabels)
			assert.Equal(t, "api", obj.Spec.Template.Labels["app"])
			assert.Equal(t, "api", obj.Spec.Template.Spec.ServiceAccountName)
			require.Len(t, obj.Spec.Template.Spec.Containers, 1)
			assert.Equal(t, "api", obj.Spec.Template.Spec.Containers[0].Name)
			assert.Equal(t, "egresslab/client:dev", obj.Spec.Template.Spec.Containers[0].Image)
		default:
			assert.Equal(t, "payments/api", o.Namespace+"/"+o.Name, "%s", o.Ref())
		}
	}
	assert.Equal(t, []string{"Namespace", "ServiceAccount", "Service", "Deployment"}, kinds)
}
