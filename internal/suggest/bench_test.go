package suggest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// benchLines is the size of the generated log: a busy sidecar's day.
const benchLines = 1_000_000

// BenchmarkSuggest reads a generated log of a million lines, in each of Istio's two
// formats, and builds the entries: lines read per second, and the largest heap in use
// sampled while it runs (memory is bounded by destinations, not lines). The log is
// written to a temporary folder first, not timed:
//
//	go test -run '^$' -bench BenchmarkSuggest -benchtime 3x ./internal/suggest/
func BenchmarkSuggest(b *testing.B) {
	for _, format := range []string{"text", "json"} {
		b.Run(format, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "istio-proxy.log")
			size := writeBenchLog(b, path, format == "json")
			b.ReportAllocs()
			peak := sampleHeap()
			var entries int
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				o := NewObservations()
				if err := o.Read(context.Background(), Source{Name: path}, f); err != nil {
					b.Fatal(err)
				}
				_ = f.Close()
				s, err := Build(o)
				if err != nil {
					b.Fatal(err)
				}
				entries = len(s.Entries)
			}
			heap := peak()
			b.ReportMetric(float64(benchLines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MB")
			b.ReportMetric(float64(size)/(1<<20), "log-MB")
			b.ReportMetric(float64(entries), "entries")
		})
	}
}

// writeBenchLog writes benchLines lines shaped as a sidecar's: most calls to registered
// services, a fifth passed through to 400 destinations (HTTP by Host, TLS by SNI, TCP by
// address), inbound lines, and pilot-agent's own.
func writeBenchLog(b *testing.B, path string, json bool) int64 {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range benchLines {
		var line string
		k := i / 100 // which destination of its kind: each kind cycles through all of its own
		switch n := i % 100; {
		case n < 70:
			line = benchLine(json, "GET", fmt.Sprintf("svc-%d.prod.svc.cluster.local", k%50), "10.96.0.10:80",
				fmt.Sprintf("outbound|80||svc-%d.prod.svc.cluster.local", k%50), "", "default")
		case n < 80:
			line = benchLine(json, "GET", fmt.Sprintf("api-%d.example.com", k%200), fmt.Sprintf("198.51.100.%d:80", k%200),
				"PassthroughCluster", "", "allow_any")
		case n < 87:
			line = benchLine(json, "", "", fmt.Sprintf("203.0.113.%d:443", k%150), "PassthroughCluster", fmt.Sprintf("tls-%d.example.org", k%150), "")
		case n < 90:
			line = benchLine(json, "", "", fmt.Sprintf("192.0.2.%d:5432", k%50), "PassthroughCluster", "", "")
		case n < 97:
			line = benchLine(json, "GET", "client.egresslab:80", "10.244.0.8:8080", "inbound|8080||", "", "default")
		default:
			line = "2026-11-25T09:43:15.173450Z\tinfo\txdsproxy\tconnected to upstream XDS server"
		}
		_, _ = w.WriteString(line + "\n")
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	_ = f.Close()
	return fi.Size()
}

// benchLine is one line in Istio's default TEXT or JSON format; method "" makes it a
// TCP connection's.
func benchLine(json bool, method, authority, dst, cluster, sni, route string) string {
	request, protocol := "- - -", ""
	if method != "" {
		request, protocol = method+" /v1/items/42 HTTP/1.1", "HTTP/1.1"
	}
	if json {
		q := func(s string) string {
			if s == "" || s == "-" {
				return "null"
			}
			return `"` + s + `"`
		}
		return fmt.Sprintf(`{"authority":%s,"bytes_received":0,"bytes_sent":359,"connection_termination_details":null,"downstream_local_address":"%s",`+
			`"downstream_remote_address":"10.244.0.8:57658","duration":9,"method":%s,"path":%s,"protocol":%s,"request_id":"18a47684-6b1d-56ab-9e7d-774e4f05551c",`+
			`"requested_server_name":%s,"response_code":200,"response_code_details":"via_upstream","response_flags":"-","route_name":%s,`+
			`"start_time":"2026-11-25T09:43:16.273Z","upstream_cluster":"%s","upstream_host":"%s","upstream_local_address":"10.244.0.8:57672",`+
			`"upstream_service_time":"2","upstream_transport_failure_reason":null,"user_agent":"egresslab-client","x_forwarded_for":null}`,
			q(authority), dst, q(method), q(map[bool]string{true: "/v1/items/42"}[method != ""]), q(protocol), q(sni), q(route), cluster, dst)
	}
	return fmt.Sprintf(`[2026-11-25T09:43:16.273Z] "%s" 200 - via_upstream - "-" 0 359 9 2 "-" "egresslab-client" "18a47684-6b1d-56ab-9e7d-774e4f05551c" "%s" "%s" %s 10.244.0.8:57672 %s 10.244.0.8:57658 %s %s`,
		request, orDash(authority), dst, cluster, dst, orDash(sni), orDash(route))
}

// sampleHeap samples the heap in use every 5 ms until the func it returns is called,
// which returns the largest seen.
func sampleHeap() func() uint64 {
	var (
		mu   sync.Mutex
		peak uint64
	)
	done := make(chan struct{})
	stopped := make(chan struct{})
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		mu.Lock()
		peak = max(peak, m.HeapInuse)
		mu.Unlock()
	}
	go func() {
		defer close(stopped)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() uint64 {
		sample()
		close(done)
		<-stopped
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
