package kind

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/egresslab/egresslab/apps/internet/site"
	"github.com/egresslab/egresslab/harness/backend"
	"github.com/egresslab/egresslab/harness/backend/kind/internal/appimage"
)

// The stand-in internet: apps/internet in its own namespace, outside the mesh, with no
// Service (a Service would put its address in every sidecar's registry, which the real
// jsonplaceholder is not). On every run it is the labs' own far end, the hosts no
// public server stands behind (site.LabHosts: the tcp-egress lab's databases), and the
// cluster's DNS names them with its pod's address, forwarding every other name as
// before. Offline it also stands in for the public hosts (site.Hosts), and CoreDNS
// forwards no name off the machine.
const (
	InternetNamespace = "egresslab-internet"
	internetName      = "internet"
	internetSecret    = "internet-tls"
)

// internet is the stand-in internet once it runs.
type internet struct {
	ip string
	// caFile holds the CA that signed the site's certificate, as a PEM bundle: the
	// client image trusts it, as a client on the internet trusts the site's real CA.
	caFile string
}

// startInternet deploys the stand-in internet (or finds it, on a kept cluster), and
// points the cluster's DNS at it.
func (b *Backend) startInternet(ctx context.Context) (_ *internet, err error) {
	what := "the labs' own hosts " + strings.Join(b.internetHosts(), " and ") + " answered in namespace " + InternetNamespace
	if b.offline {
		what = "stand-in internet: " + strings.Join(b.internetHosts(), ", ") +
			" answered in namespace " + InternetNamespace + ", CoreDNS forwards nothing"
	}
	done := step(b.progress, what)
	defer func() { done(err) }()
	if b.loadImage == nil {
		return nil, errors.New("the stand-in internet needs a cluster egresslab created: it loads its image into the nodes")
	}
	k := b.kube
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: InternetNamespace,
		// Outside the mesh, as the internet is.
		Labels: map[string]string{"istio-injection": "disabled"}}}
	if _, err := k.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", InternetNamespace, err)
	}
	caPEM, err := internetCertificate(ctx, k, b.internetCA.cert, b.internetCA.key)
	if err != nil {
		return nil, err
	}
	in := &internet{caFile: filepath.Join(b.workDir, "internet-ca.pem")}
	if err := os.WriteFile(in.caFile, caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write the stand-in internet's CA: %w", err)
	}
	built, err := b.buildAndLoad(ctx, appimage.Internet, appimage.WithCABundle(""))
	if err != nil {
		return nil, err
	}
	d := internetDeployment(built.Digest.String(), caPEM)
	if _, err := k.AppsV1().Deployments(InternetNamespace).Create(ctx, d, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		// A kept cluster: the same Deployment, with this run's image.
		old, err := k.AppsV1().Deployments(InternetNamespace).Get(ctx, internetName, metav1.GetOptions{})
		if err == nil {
			old.Spec = d.Spec
			_, err = k.AppsV1().Deployments(InternetNamespace).Update(ctx, old, metav1.UpdateOptions{})
		}
		if err != nil {
			return nil, fmt.Errorf("update the stand-in internet: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("deploy the stand-in internet: %w", err)
	}
	pod, err := b.readyPod(ctx, backend.Workload{Namespace: InternetNamespace, Name: internetName})
	if err != nil {
		return nil, fmt.Errorf("wait for the stand-in internet: %w", err)
	}
	in.ip = pod.Status.PodIP
	if err := b.pointDNS(ctx, in.ip); err != nil {
		return nil, err
	}
	return in, nil
}

// internetHosts are the names the stand-in internet answers for and the cluster's DNS
// gives its address: the labs' own hosts on every run; offline, the public hosts too.
func (b *Backend) internetHosts() []string {
	if b.offline {
		return append(slices.Clone(site.Hosts), site.LabHosts...)
	}
	return site.LabHosts
}

// internetCertificate returns the CA of the site's certificate, making the certificate
// (kept in a Secret, so that a kept cluster's site and a new client agree) the first
// time: signed by the CA given in PEM (the offline run's, which its proxy image trusts),
// or by a new one when none is given.
func internetCertificate(ctx context.Context, k kubernetes.Interface, caCert, caKey []byte) ([]byte, error) {
	s, err := k.CoreV1().Secrets(InternetNamespace).Get(ctx, internetSecret, metav1.GetOptions{})
	if err == nil && len(s.Data["ca.crt"]) > 0 && (caCert == nil || bytes.Equal(s.Data["ca.crt"], caCert)) {
		if missing := uncovered(s.Data[corev1.TLSCertKey], site.Hosts); len(missing) > 0 {
			return nil, fmt.Errorf("the kept cluster's stand-in internet has no certificate for %s (it predates that host): "+
				"delete the cluster (egresslab clean) and run again", strings.Join(missing, ", "))
		}
		return s.Data["ca.crt"], nil
	}
	if err == nil {
		// A kept cluster's certificate from another CA than the proxy image trusts.
		if err := k.CoreV1().Secrets(InternetNamespace).Delete(ctx, internetSecret, metav1.DeleteOptions{}); err != nil {
			return nil, fmt.Errorf("replace the stand-in internet's certificate: %w", err)
		}
	}
	var cert tls.Certificate
	var caPEM []byte
	if caCert != nil {
		cert, err = site.CertificateFrom(caCert, caKey, site.Hosts...)
		caPEM = caCert
	} else {
		var caDER []byte
		cert, _, caDER, err = site.Certificate(site.Hosts...)
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	}
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("encode the stand-in internet's key: %w", err)
	}
	s = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: internetSecret, Namespace: InternetNamespace},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
			corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
			"ca.crt":                caPEM,
		},
	}
	if _, err := k.CoreV1().Secrets(InternetNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("store the stand-in internet's certificate: %w", err)
	}
	return caPEM, nil
}

// uncovered lists the hosts the PEM certificate is not for.
func uncovered(certPEM []byte, hosts []string) []string {
	var names []string
	if block, _ := pem.Decode(certPEM); block != nil {
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			names = c.DNSNames
		}
	}
	var missing []string
	for _, h := range hosts {
		if !slices.Contains(names, h) {
			missing = append(missing, h)
		}
	}
	return missing
}

func internetDeployment(digest string, caPEM []byte) *appsv1.Deployment {
	labels := map[string]string{"app": internetName}
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: internetName, Namespace: InternetNamespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			// One pod at a time: DNS names one address.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				// A new certificate (another CA) rolls the pod, which reads it at start.
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{appimage.DigestAnnotation: digest,
					"egresslab.io/internet-ca": fmt.Sprintf("%x", sha256.Sum256(caPEM))[:16]}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: internetName, Image: appimage.Internet.Tag, ImagePullPolicy: corev1.PullNever,
						Args: []string{"--cert=/tls/tls.crt", "--key=/tls/tls.key", fmt.Sprintf("--tcp=%d", site.DatabasePort),
							fmt.Sprintf("--proxy=:%d", site.ProxyPort)},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}, {Name: "https", ContainerPort: 443},
							{Name: "tcp-postgres", ContainerPort: site.DatabasePort}, {Name: "tcp-proxy", ContainerPort: site.ProxyPort}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
							TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}, PeriodSeconds: 1},
						VolumeMounts: []corev1.VolumeMount{{Name: "tls", MountPath: "/tls", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{
						Secret: &corev1.SecretVolumeSource{SecretName: internetSecret}}}},
				},
			},
		},
	}
}

// Corefile is CoreDNS's configuration: kubeadm's, with hosts naming the stand-in
// internet's names (names) with its address. CoreDNS runs its plugins in its own
// order, where hosts comes before kubernetes: hosts must fall through for the
// cluster's names. Online, every other name is forwarded as kubeadm's Corefile
// forwards it; offline (forward false) there is no forward plugin, and a name that is
// neither the cluster's nor the site's finds no plugin after kubernetes and fails at
// once (SERVFAIL) instead of going to the host's resolver.
func Corefile(internetIP string, names []string, forward bool) string {
	forwarding := ""
	if forward {
		forwarding = `
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }`
	}
	return `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    hosts {
       ` + internetIP + ` ` + strings.Join(names, " ") + `
       ttl 5
       fallthrough
    }
    prometheus :9153` + forwarding + `
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
`
}

// pointDNS puts the offline Corefile in place and restarts CoreDNS when it changed.
func (b *Backend) pointDNS(ctx context.Context, ip string) error {
	k := b.kube
	cm, err := k.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read CoreDNS's configuration: %w", err)
	}
	want := Corefile(ip, b.internetHosts(), !b.offline)
	if cm.Data["Corefile"] == want {
		return nil
	}
	cm.Data["Corefile"] = want
	if _, err := k.CoreV1().ConfigMaps("kube-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("point CoreDNS at the stand-in internet: %w", err)
	}
	// CoreDNS's reload plugin would notice in up to a minute or two (the kubelet's
	// ConfigMap sync, then its own check); a restart takes seconds.
	d, err := k.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("restart CoreDNS: %w", err)
	}
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	d.Spec.Template.Annotations["egresslab.dev/corefile"] = ip
	if _, err := k.AppsV1().Deployments("kube-system").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("restart CoreDNS: %w", err)
	}
	if _, err := b.readyPod(ctx, backend.Workload{Namespace: "kube-system", Name: "coredns"}); err != nil {
		return fmt.Errorf("restart CoreDNS: %w", err)
	}
	return nil
}
