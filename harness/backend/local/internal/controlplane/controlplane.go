// Package controlplane runs a real Kubernetes control plane and istiod as local processes:
// etcd, kube-apiserver and istiod (pilot-discovery), each on free loopback ports, with
// state in one temporary folder. Nothing runs in containers and there are no nodes:
// the API server stores objects, istiod watches them and serves xDS, and whoever
// starts the control plane plays kubelet and sidecar (see harness/local).
//
// Start waits for each program to be ready and reports progress; Stop (or the end of
// Start's context, or a failed Start) stops every process group and removes the
// folder. Processes die with their parent (Pdeathsig), and a later Start removes the
// folders of earlier runs whose owner died.
package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	istioclient "istio.io/client-go/pkg/clientset/versioned"

	"github.com/egresslab/egresslab/harness/manifest"
)

// IstioNamespace is where istiod runs and keeps its own objects.
const IstioNamespace = "istio-system"

// Options configures Start.
type Options struct {
	// Binaries to run; FindBinaries(BinDir) when empty.
	Binaries Binaries
	// BinDir is where to find the binaries (DefaultBinDir when "").
	BinDir string
	// LogsDir, when set, receives a copy of every program's log when the control plane
	// stops (for CI artifacts, or to see what istiod said); unset, logs go with its folder.
	LogsDir string
	// Mesh is the mesh config istiod starts with (manifests/istio/values.yaml).
	Mesh manifest.MeshValues
	// Progress receives one line per step, with elapsed times; nil discards them.
	Progress io.Writer
	// StopOnSignal stops the control plane on SIGINT/SIGTERM and then lets the signal
	// end the program as it would have. For go test, which handles no signals; a
	// program that handles them itself should cancel Start's context instead.
	StopOnSignal bool
	// Env is added to istiod's environment (Istio feature flags, e.g. PILOT_DEBOUNCE_AFTER).
	Env []string
}

// ControlPlane is a running etcd, kube-apiserver and istiod.
type ControlPlane struct {
	// Dir holds every program's state and log; removed by Stop.
	Dir string
	// RESTConfig reaches the API server as a cluster admin (system:masters).
	RESTConfig *rest.Config
	Kube       kubernetes.Interface
	Istio      istioclient.Interface
	// KubeVersion is what the API server reports at /version.
	KubeVersion string
	// XDSAddress is istiod's plaintext xDS (gRPC) address, where sidecars connect.
	XDSAddress string
	// DebugAddress is istiod's HTTP address: /ready, /debug/*.
	DebugAddress string

	progress io.Writer
	logsDir  string
	start    time.Time
	meshFile string

	mu       sync.Mutex
	procs    []*process // in start order
	closing  bool       // Stop has begun: start nothing more
	stopped  chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// Start starts etcd, kube-apiserver (with Istio's CRDs) and istiod, in that order,
// waiting for each to be ready. When Start fails or ctx ends, everything it started
// is stopped and its folder removed.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	// A port is checked free before a program binds it; another program can take it in
	// between. Such a start cleans up after itself, so it is simply tried again.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		cp, err := start(ctx, opts)
		if err == nil || attempt == attempts || ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") {
			return cp, err
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "[local control plane] a port was taken while starting; starting again on other ports (attempt %d of %d)\n", attempt+1, attempts)
		}
	}
}

func start(ctx context.Context, opts Options) (cp *ControlPlane, err error) {
	if opts.Mesh.Mesh == nil {
		return nil, errors.New("local control plane: no mesh config (load manifests/istio/values.yaml with manifest.LoadMeshValues)")
	}
	if opts.Binaries == (Binaries{}) {
		if opts.Binaries, err = FindBinaries(opts.BinDir); err != nil {
			return nil, err
		}
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	sweepStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("local control plane: %w", err)
	}
	cp = &ControlPlane{Dir: dir, progress: progress, logsDir: opts.LogsDir, start: time.Now(), stopped: make(chan struct{})}
	running.Lock()
	running.set[cp] = struct{}{}
	running.Unlock()
	if opts.StopOnSignal {
		stopOnSignal()
	}
	defer func() {
		if err != nil {
			cp.logf("start failed; stopping what was started")
			_ = cp.Stop()
			cp = nil
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return cp, fmt.Errorf("local control plane: %w", err)
	}
	// The context ends the control plane's life, not only its start.
	go func(cp *ControlPlane) {
		select {
		case <-ctx.Done():
			_ = cp.Stop()
		case <-cp.stopped:
		}
	}(cp)

	etcdURL, err := cp.startEtcd(ctx, opts.Binaries.Etcd)
	if err != nil {
		return cp, err
	}
	if err := cp.startKubeAPIServer(ctx, opts.Binaries.KubeAPIServer, etcdURL); err != nil {
		return cp, err
	}
	if err := cp.installCRDs(ctx); err != nil {
		return cp, err
	}
	if err := cp.startIstiod(ctx, opts.Binaries.Istiod, opts.Mesh, opts.Env); err != nil {
		return cp, err
	}
	cp.logf("control plane ready: kube-apiserver %s, istiod %s, xDS at %s", cp.KubeVersion, IstioVersion(), cp.XDSAddress)
	return cp, nil
}

func (cp *ControlPlane) logf(format string, args ...any) {
	fmt.Fprintf(cp.progress, "[local control plane +%5.1fs] %s\n", time.Since(cp.start).Seconds(), fmt.Sprintf(format, args...))
}

// PIDs are the process IDs of every program started, running or not.
func (cp *ControlPlane) PIDs() []int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	pids := make([]int, 0, len(cp.procs))
	for _, p := range cp.procs {
		pids = append(pids, p.pid())
	}
	return pids
}

// Stop stops istiod, kube-apiserver and etcd (in that order, each by process group)
// and removes the folder. It is safe to call more than once and from any goroutine.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		t0 := time.Now()
		cp.mu.Lock()
		cp.closing = true
		procs := cp.procs
		cp.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(10 * time.Second)
		}
		cp.keepLogs(procs)
		cp.stopErr = os.RemoveAll(cp.Dir)
		running.Lock()
		delete(running.set, cp)
		running.Unlock()
		cp.logf("stopped %d processes and removed %s in %s", len(procs), cp.Dir, time.Since(t0).Round(time.Millisecond))
		close(cp.stopped)
	})
	<-cp.stopped
	return cp.stopErr
}

// testHookStarted, when set by a test, is called after each process starts.
var testHookStarted func(cp *ControlPlane, name string)

// LogsEnv names the folder of Options.LogsDir, for the backend's config.
const LogsEnv = "EGRESSLAB_LOCALCP_LOGS"

func (cp *ControlPlane) keepLogs(procs []*process) {
	dest := cp.logsDir
	if dest == "" || len(procs) == 0 {
		return
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		cp.logf("keep logs: %v", err)
		return
	}
	stamp := cp.start.Format("20060102-150405")
	for _, p := range procs {
		data, err := os.ReadFile(p.logPath)
		if err != nil {
			continue
		}
		to := filepath.Join(dest, stamp+"-"+filepath.Base(p.logPath))
		if err := os.WriteFile(to, data, 0o644); err != nil {
			cp.logf("keep logs: %v", err)
		}
	}
	cp.logf("logs kept in %s", dest)
}

func (cp *ControlPlane) run(name, path string, args, env []string) (*process, error) {
	cp.mu.Lock()
	if cp.closing {
		cp.mu.Unlock()
		return nil, errors.New("local control plane: stopped while starting")
	}
	p, err := startProcess(cp.Dir, name, path, args, env)
	if err == nil {
		cp.procs = append(cp.procs, p)
	}
	cp.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if testHookStarted != nil {
		testHookStarted(cp, name)
	}
	return p, nil
}

// waitReady polls ready until it says yes, p exits, ctx ends or timeout passes.
func (cp *ControlPlane) waitReady(ctx context.Context, p *process, timeout time.Duration, ready func(context.Context) error) error {
	t0 := time.Now()
	deadline := t0.Add(timeout)
	var last error
	for {
		if done, _ := p.exited(); done {
			return p.died()
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(rctx)
		cancel()
		if last == nil {
			cp.logf("%s ready in %s (pid %d)", p.name, time.Since(t0).Round(10*time.Millisecond), p.pid())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v; last lines of its log:\n%s", p.name, timeout, last, p.logTail(25))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", p.name, context.Cause(ctx))
		case <-cp.stopped:
			return fmt.Errorf("%s: local control plane stopped while starting", p.name)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (cp *ControlPlane) startEtcd(ctx context.Context, bin string) (string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	client, peer := "http://"+loopback(ports[0]), "http://"+loopback(ports[1])
	cp.logf("starting etcd on %s", client)
	p, err := cp.run("etcd", bin, []string{
		"--name=egresslab",
		"--data-dir=" + filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=egresslab=" + peer,
		"--logger=zap",
		"--log-level=warn",
	}, nil)
	if err != nil {
		return "", err
	}
	return client, cp.waitReady(ctx, p, 30*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, client+"/health")
	})
}

func (cp *ControlPlane) startKubeAPIServer(ctx context.Context, bin, etcdURL string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	token, err := randomToken()
	if err != nil {
		return err
	}
	tokens := filepath.Join(cp.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,egresslab-admin,egresslab-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	saKey, saPub, err := cp.serviceAccountKeys()
	if err != nil {
		return err
	}
	certDir := filepath.Join(cp.Dir, "apiserver-certs")
	addr := loopback(ports[0])
	cp.logf("starting kube-apiserver %s on https://%s", KubeVersion, addr)
	p, err := cp.run("kube-apiserver", bin, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The "kubernetes" Service's endpoints would name the advertise address, which
		// may not be loopback; nothing here reaches the API server through that Service.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(ports[0]),
		"--cert-dir=" + certDir,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	// The server writes its self-signed serving certificate (with its CA) before it
	// listens; until then, there is nothing to trust.
	var cfg *rest.Config
	err = cp.waitReady(ctx, p, 120*time.Second, func(ctx context.Context) error {
		if cfg == nil {
			ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
			if err != nil {
				return fmt.Errorf("no serving certificate yet: %w", err)
			}
			cfg = &rest.Config{Host: "https://" + addr, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: ca},
				QPS: 50, Burst: 100}
		}
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		body, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w (%s)", err, body)
		}
		return nil
	})
	if err != nil {
		return err
	}
	cp.RESTConfig = cfg
	if cp.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if cp.Istio, err = istioclient.NewForConfig(cfg); err != nil {
		return err
	}
	v, err := cp.Kube.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("kube-apiserver version: %w", err)
	}
	cp.KubeVersion = v.GitVersion
	cp.logf("kube-apiserver reports version %s", v.GitVersion)
	return nil
}

// serviceAccountKeys generates the key pair the API server signs service account
// tokens with, in process.
func (cp *ControlPlane) serviceAccountKeys() (keyPath, pubPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	keyPath, pubPath = filepath.Join(cp.Dir, "sa.key"), filepath.Join(cp.Dir, "sa.pub")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, nil
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func (cp *ControlPlane) startIstiod(ctx context.Context, bin string, mesh manifest.MeshValues, extraEnv []string) error {
	if _, err := cp.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: IstioNamespace}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", IstioNamespace, err)
	}
	kubeconfig := filepath.Join(cp.Dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, cp.RESTConfig); err != nil {
		return err
	}
	cp.meshFile = filepath.Join(cp.Dir, "mesh.yaml")
	if err := writeMesh(cp.meshFile, mesh); err != nil {
		return err
	}
	networks := filepath.Join(cp.Dir, "meshNetworks.yaml")
	if err := os.WriteFile(networks, []byte("networks: {}\n"), 0o600); err != nil {
		return err
	}
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	cp.DebugAddress, cp.XDSAddress = loopback(ports[0]), loopback(ports[1])
	cp.logf("starting istiod %s: xDS on %s, HTTP on %s", IstioVersion(), cp.XDSAddress, cp.DebugAddress)
	env := []string{
		"POD_NAME=istiod-local",
		"POD_NAMESPACE=" + IstioNamespace,
		"REVISION=default",
		// No webhooks: there is no pod to inject and nothing calls back into istiod.
		"INJECTION_WEBHOOK_CONFIG_NAME=",
		"VALIDATION_WEBHOOK_CONFIG_NAME=",
	}
	p, err := cp.run("istiod", bin, []string{
		"discovery",
		"--kubeconfig=" + kubeconfig,
		"--meshConfig=" + cp.meshFile,
		"--networksConfig=" + networks,
		"--httpAddr=" + cp.DebugAddress,
		"--grpcAddr=" + cp.XDSAddress,
		"--secureGRPCAddr=" + loopback(ports[2]),
		"--monitoringAddr=" + loopback(ports[3]),
		"--httpsAddr=" + loopback(ports[4]),
		"--ctrlz_port=0",
		"--ctrlz_address=127.0.0.1",
		"--domain=cluster.local",
		"--shutdownDuration=1s",
		"--log_output_level=default:info",
	}, append(env, extraEnv...))
	if err != nil {
		return err
	}
	return cp.waitReady(ctx, p, 120*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, "http://"+cp.DebugAddress+"/ready")
	})
}

func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "admin"}
	kc.CurrentContext = "local"
	return clientcmd.WriteToFile(*kc, path)
}

func httpOK(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
	return nil
}

var signalOnce sync.Once

// stopOnSignal stops every running control plane on SIGINT or SIGTERM, then lets the
// signal do what it would have done without this handler.
func stopOnSignal() {
	signalOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			running.Lock()
			cps := make([]*ControlPlane, 0, len(running.set))
			for cp := range running.set {
				cps = append(cps, cp)
			}
			running.Unlock()
			for _, cp := range cps {
				_ = cp.Stop()
			}
			signal.Stop(ch)
			signal.Reset(sig)
			_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		}()
	})
}
