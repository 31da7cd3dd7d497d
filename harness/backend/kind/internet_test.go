package kind

import (
	"encoding/pem"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/apps/internet/site"
)

// The offline Corefile answers every host of the stand-in internet with its pod, lets
// every other name fall through to the cluster's own zone (without fallthrough CoreDNS
// answered SERVFAIL for every cluster name, and pilot-agent could not find istiod), and
// forwards nothing off the machine.
func TestTheOfflineCorefileNamesEveryInternetHostAndForwardsNothing(t *testing.T) {
	c := Corefile("10.244.0.9")
	require.Greater(t, len(site.Hosts), 1)
	assert.Contains(t, c, "10.244.0.9 "+strings.Join(site.Hosts, " "))
	hosts := c[strings.Index(c, "hosts {"):]
	hosts = hosts[:strings.Index(hosts, "}")]
	assert.Contains(t, hosts, "fallthrough")
	assert.NotContains(t, c, "forward")
}

// A kept cluster's certificate made before a host was added is found out, not used.
func TestAKeptCertificateMustCoverEveryInternetHost(t *testing.T) {
	cert, _, _, err := site.Certificate(site.Host)
	require.NoError(t, err)
	old := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	assert.Equal(t, site.Hosts[1:], uncovered(old, site.Hosts))
	cert, _, _, err = site.Certificate(site.Hosts...)
	require.NoError(t, err)
	assert.Empty(t, uncovered(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), site.Hosts))
}
