// Package apps is what the labs share about the apps they deploy (this folder's YAML):
// the client app every call is made from unless a lab names another workload
// (apps/client, deployed by labs/apps/client.yaml, `deploy: client` in a lab file). The
// harness knows no app: a lab names the workload it calls from and what it deploys.
package apps

import "github.com/egresslab/egresslab/harness/backend"

// Client is the lab's client app, as labs/apps/client.yaml deploys it.
var Client = backend.Workload{Namespace: "egresslab", Name: "client"}
