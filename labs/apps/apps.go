// Package apps is what the labs share about the apps they deploy: the client app every
// call is made from (apps/client, deployed by manifests/apps/client.yaml). The harness
// knows no app: a lab names the workload it calls from and the manifests it applies.
package apps

import (
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/manifests"
)

// Client is the lab's client app, as manifests/apps/client.yaml deploys it.
var Client = backend.Workload{Namespace: "egresslab", Name: "client"}

// ClientManifest is the client's Namespace, ServiceAccount, Service and Deployment.
const ClientManifest = manifests.ClientApp
