package mirror

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Request is one request a mirror answered: its server's own log, which a run reads as
// evidence that the online code path fetched from it.
type Request struct {
	Method, Path string
	Status       int
}

func (r Request) String() string { return fmt.Sprintf("%s %s %d", r.Method, r.Path, r.Status) }

// Server is one mirror, listening until Close.
type Server struct {
	// What names the mirror in messages ("the bundle's chart repository").
	What string
	// Addr is host:port; URL is http://Addr.
	Addr, URL string

	srv *http.Server
	mu  sync.Mutex
	log []Request
}

// Requests are the requests answered so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// Close stops the server at once.
func (s *Server) Close() error { return s.srv.Close() }

// ServeCharts serves the bundle's Helm chart repository (index.yaml and the archives) on
// addr ("127.0.0.1:0": Helm runs in this process).
func ServeCharts(b *Bundle, addr string) (*Server, error) {
	return serve("the chart repository of bundle "+b.File, addr, readOnly(http.FileServer(http.Dir(filepath.Join(b.Dir, chartsDir)))))
}

// ServeRegistry serves the bundle's images as a registry mirror of docker.io on addr: the
// address of this machine on the network the kind nodes run on, so that their containerd
// pulls through it. It answers pulls only (GET and HEAD).
func ServeRegistry(b *Bundle, addr string) (*Server, error) {
	dir := filepath.Join(b.Dir, imagesDir)
	// Blobs are read from the layout's blobs/sha256/<hex> as they are; manifests are
	// loaded into the registry, by tag and by digest, before it listens.
	h := registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(filepath.Join(dir, "blobs"))),
		registry.Logger(log.New(io.Discard, "", 0)))
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("serve the images of bundle %s: %w", b.File, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("serve the images of bundle %s: %w", b.File, err)
	}
	for _, desc := range im.Manifests {
		ref, err := name.ParseReference(desc.Annotations[refAnnotation])
		if err != nil {
			return nil, fmt.Errorf("serve the images of bundle %s: an image without a usable name (%v)", b.File, err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "blobs", desc.Digest.Algorithm, desc.Digest.Hex))
		if err != nil {
			return nil, fmt.Errorf("serve image %s of bundle %s: %w", ref, b.File, err)
		}
		req := httptest.NewRequest(http.MethodPut, "/v2/"+ref.Context().RepositoryStr()+"/manifests/"+ref.Identifier(), bytes.NewReader(raw))
		req.Header.Set("Content-Type", string(desc.MediaType))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			return nil, fmt.Errorf("serve image %s of bundle %s: the registry refused its manifest: %d %s", ref, b.File, rec.Code, rec.Body)
		}
	}
	return serve("the images of bundle "+b.File, addr, readOnly(h))
}

// readOnly lets only GET and HEAD through: a mirror is pulled from, never pushed to.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "a read-only mirror", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func serve(what, addr string, h http.Handler) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve %s on %s: %w", what, addr, err)
	}
	s := &Server{What: what, Addr: l.Addr().String()}
	s.URL = "http://" + s.Addr
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		s.mu.Lock()
		s.log = append(s.log, Request{Method: r.Method, Path: r.URL.Path, Status: rec.status})
		s.mu.Unlock()
	})}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("%s: %v", what, err)
		}
	}()
	return s, nil
}

// Saw says whether the server answered a method request for path with a 2xx status.
func (s *Server) Saw(method, path string) bool {
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path && r.Status/100 == 2 {
			return true
		}
	}
	return false
}

// Pulled says whether the registry served image ref's manifest (by tag), the request
// containerd makes first when it pulls ref.
func (s *Server) Pulled(ref string) bool {
	r, err := name.ParseReference(ref)
	if err != nil {
		return false
	}
	path := "/v2/" + r.Context().RepositoryStr() + "/manifests/" + r.Identifier()
	return s.Saw(http.MethodGet, path) || s.Saw(http.MethodHead, path)
}

// Summary is the server's log in a line: how many requests, of which what.
func (s *Server) Summary() string {
	reqs := s.Requests()
	var lines []string
	for _, r := range reqs {
		lines = append(lines, r.String())
	}
	return fmt.Sprintf("%s (%s) answered %d requests: %s", s.What, s.URL, len(reqs), strings.Join(lines, ", "))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Stop closes every server given, for a deferred cleanup.
func Stop(servers ...*Server) {
	for _, s := range servers {
		if s != nil {
			_ = s.Close()
		}
	}
}
