package kindcluster_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/egresslab/egresslab/harness/kindcluster"
)

// fakeDaemon answers the two Engine API calls preflight makes, on a unix socket.
func fakeDaemon(t *testing.T, info string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("/info", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(info)) })
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock
}

func TestPingReadsTheDaemonsInfo(t *testing.T) {
	host := fakeDaemon(t, `{"MemTotal": 8254689280, "NCPU": 4, "Architecture": "aarch64", "ServerVersion": "28.1.1"}`)
	d, err := kindcluster.Ping(context.Background(), host)
	require.NoError(t, err)
	assert.Equal(t, int64(8254689280), d.MemTotal)
	assert.Equal(t, "aarch64", d.Arch)
	assert.NoError(t, kindcluster.CheckMemory(d))
}

func TestTooLittleMemorySaysTheFix(t *testing.T) {
	d, err := kindcluster.Ping(context.Background(), fakeDaemon(t, `{"MemTotal": 2147483648}`))
	require.NoError(t, err)
	err = kindcluster.CheckMemory(d)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "has 2.0 GiB of memory, the lab needs at least 4 GiB")
	assert.Contains(t, err.Error(), "Settings > Resources > Memory")
}

func TestNoDaemonIsSaidPlainlyAndQuickly(t *testing.T) {
	host := "unix://" + filepath.Join(t.TempDir(), "nothing.sock")
	t.Setenv("DOCKER_HOST", host)
	start := time.Now()
	ok, why := kindcluster.Available(context.Background(), kindcluster.Docker)
	assert.False(t, ok)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Contains(t, why, "no Docker daemon answers at "+host+": ")
	assert.Contains(t, why, "start Docker")

	err := kindcluster.Preflight(context.Background(), kindcluster.Docker, false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no Docker daemon answers at "+host)
}

func TestUnsupportedDockerHost(t *testing.T) {
	_, err := kindcluster.Ping(context.Background(), "ssh://me@box")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unix:// and tcp://")
}

func TestCheckReachableNamesWhatFailedAndWhy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	closed.Close()

	require.NoError(t, kindcluster.CheckReachable(context.Background(),
		[]kindcluster.Endpoint{{Addr: ln.Addr().String(), Why: "up"}}, time.Second))
	err = kindcluster.CheckReachable(context.Background(), []kindcluster.Endpoint{
		{Addr: ln.Addr().String(), Why: "up"}, {Addr: closedAddr, Why: "download charts"}}, time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), closedAddr+" (to download charts)")
	assert.NotContains(t, err.Error(), ln.Addr().String())
	assert.Contains(t, err.Error(), "-backend=sim")
}
