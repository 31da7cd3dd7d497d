package sim

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	kerrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiv1 "istio.io/api/networking/v1"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/istio/pilot/pkg/controllers/ipallocate"
	autoallocate "istio.io/istio/pilot/pkg/networking/serviceentry"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/host"
	"istio.io/istio/pkg/config/schema/gvr"
	kubelib "istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/kube/kclient/clienttest"
)

// allocateWait bounds how long an apply waits for the allocator's answer; it answers in
// milliseconds, so reaching this is a bug, reported as one.
const allocateWait = 10 * time.Second

// allocator is istiod's IP auto-allocation controller (pilot/pkg/controllers/ipallocate,
// on by default: PILOT_ENABLE_IP_AUTOALLOCATE), run in process on a fake API server that
// sees every ServiceEntry sim applies and deletes, in the same order. A ServiceEntry
// without addresses (and not NONE) gets an address per host from 240.240.0.0/16 in its
// status, which istiod gives to the sidecars that capture DNS: their listeners and their
// DNS name table. Running Istio's own controller keeps what it does in sim what it does
// in a cluster, down to its quirks: it never frees an address (ipallocate.go,
// reconcileServiceEntry's TODO), so a host applied again gets a new one.
type allocator struct {
	client kubelib.Client
	stop   chan struct{}
}

// newAllocator starts the controller; close stops it.
func newAllocator(f *failer) (a *allocator, err error) {
	defer recoverFailure("start istiod's IP auto-allocation controller", &err)
	c := kubelib.NewFakeClient()
	clienttest.MakeCRD(f, c, gvr.ServiceEntry)
	stop := make(chan struct{})
	ctrl := ipallocate.NewIPAllocator(stop, c)
	go ctrl.Run(stop)
	c.RunAndWait(stop)
	deadline := time.Now().Add(allocateWait)
	for !ctrl.HasSynced() {
		if time.Now().After(deadline) {
			close(stop)
			return nil, fmt.Errorf("start istiod's IP auto-allocation controller: not synced after %s", allocateWait)
		}
		time.Sleep(time.Millisecond)
	}
	return &allocator{client: c, stop: stop}, nil
}

func (a *allocator) close() { close(a.stop) }

// apply creates or updates the ServiceEntry on the fake API server and returns its
// status once the controller has reconciled it: the addresses allocated for its hosts,
// or none where it allocates none. An update keeps the status, as the API server keeps
// it across `kubectl apply` (status is a subresource).
func (a *allocator) apply(ctx context.Context, cfg config.Config) (*apiv1.ServiceEntryStatus, error) {
	spec, ok := cfg.Spec.(*apiv1.ServiceEntry)
	if !ok {
		return nil, nil
	}
	client := a.client.Istio().NetworkingV1().ServiceEntries(cfg.Namespace)
	se := &clientnetworking.ServiceEntry{ObjectMeta: cfg.ToObjectMeta()}
	se.ResourceVersion = ""
	proto.Merge(&se.Spec, spec)
	have, err := client.Get(ctx, cfg.Name, metav1.GetOptions{})
	switch {
	case kerrors.IsNotFound(err):
		_, err = client.Create(ctx, se, metav1.CreateOptions{})
	case err == nil:
		have.Spec.Reset()
		proto.Merge(&have.Spec, spec)
		have.Labels = cfg.Labels
		_, err = client.Update(ctx, have, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("ServiceEntry %s/%s: give it to istiod's IP auto-allocation controller: %w", cfg.Namespace, cfg.Name, err)
	}
	deadline := time.Now().Add(allocateWait)
	for {
		got, err := client.Get(ctx, cfg.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("ServiceEntry %s/%s: read the addresses istiod's IP auto-allocation controller gave it: %w", cfg.Namespace, cfg.Name, err)
		}
		if reconciled(got) {
			return proto.Clone(&got.Status).(*apiv1.ServiceEntryStatus), nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("ServiceEntry %s/%s: istiod's IP auto-allocation controller gave it no addresses within %s", cfg.Namespace, cfg.Name, allocateWait)
		}
		time.Sleep(time.Millisecond)
	}
}

// reconciled reports whether the status is what the controller settles on for the
// entry: an address for every host it allocates for (a wildcard host only under
// DYNAMIC_DNS, ipallocate.go keepHost), or no addresses where it allocates none.
func reconciled(se *clientnetworking.ServiceEntry) bool {
	got := autoallocate.GetHostAddressesFromServiceEntry(se)
	if !autoallocate.ShouldV2AutoAllocateIP(se) {
		return len(got) == 0
	}
	for _, h := range se.Spec.Hosts {
		if host.Name(h).IsWildCarded() && se.Spec.Resolution != apiv1.ServiceEntry_DYNAMIC_DNS {
			continue
		}
		if len(got[h]) == 0 {
			return false
		}
	}
	return true
}

// delete removes the ServiceEntry; the controller frees nothing (see allocator).
func (a *allocator) delete(ctx context.Context, namespace, name string) error {
	err := a.client.Istio().NetworkingV1().ServiceEntries(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !kerrors.IsNotFound(err) {
		return fmt.Errorf("ServiceEntry %s/%s: delete it from istiod's IP auto-allocation controller's view: %w", namespace, name, err)
	}
	return nil
}

// addressBook keeps every ServiceEntry change sim makes, in order, and gives the status
// istiod's IP auto-allocation controller would have written for each entry by now. The
// addresses matter only to a sidecar that captures DNS (pilot/pkg/model/service.go,
// nodeUsesAutoallocatedIPs), so the controller starts, and is told the history so far,
// only when a world has such a sidecar: the other labs pay nothing for it.
type addressBook struct {
	history  []entryChange
	replayed int // how much of history the controller has been told
	alloc    *allocator
	status   map[string]*apiv1.ServiceEntryStatus // by namespace/name
}

// entryChange is a ServiceEntry applied (as stamped) or deleted.
type entryChange struct {
	cfg     config.Config
	deleted bool
}

// record adds a change, if it is a ServiceEntry's.
func (a *addressBook) record(cfg config.Config, deleted bool) {
	if _, ok := cfg.Spec.(*apiv1.ServiceEntry); ok {
		a.history = append(a.history, entryChange{cfg: cfg, deleted: deleted})
	}
}

// statuses tells the controller the changes it has not seen and returns each present
// entry's status, by namespace/name.
func (a *addressBook) statuses() (map[string]*apiv1.ServiceEntryStatus, error) {
	if a.alloc == nil {
		alloc, err := newAllocator(&failer{})
		if err != nil {
			return nil, err
		}
		a.alloc, a.status = alloc, map[string]*apiv1.ServiceEntryStatus{}
	}
	ctx := context.Background()
	for ; a.replayed < len(a.history); a.replayed++ {
		ch := a.history[a.replayed]
		key := ch.cfg.Namespace + "/" + ch.cfg.Name
		if ch.deleted {
			if err := a.alloc.delete(ctx, ch.cfg.Namespace, ch.cfg.Name); err != nil {
				return nil, err
			}
			delete(a.status, key)
			continue
		}
		st, err := a.alloc.apply(ctx, ch.cfg)
		if err != nil {
			return nil, err
		}
		a.status[key] = st
	}
	return a.status, nil
}

// close stops the controller, if it started.
func (a *addressBook) close() {
	if a.alloc != nil {
		a.alloc.close()
		a.alloc = nil
	}
}
