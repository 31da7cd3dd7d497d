# egresslab: a lab for how an Istio mesh controls traffic that leaves it.
#
#   make lab-serviceentry   the narrated ServiceEntry lab (ARGS="-instructor -show-config -entry FILE")
#   make lab LAB=name       any lab of labs/ (bin/egresslab lab list names them); LAB=path/lab.yaml for your own
#   make handouts           write each lab's handout, labs/NAME/README.md, from its lab.yaml
#   make diagrams           render every handout's diagrams in headless Chromium and check them (installs chromium, mermaid-cli)
#   make test               go vet + every test; the scenarios on sim and on the local control plane; -race where light
#   make race               the race detector on the packages with goroutines (the stand-in, the engine, the apps)
#   make check URL=...      would a call to URL be allowed? (ARGS="-mode ALLOW_ANY -entry FILE")
#   make bench              the benchmarks quoted in docs/performance.md
#   make e2e                the scenarios on a real kind cluster (needs Docker and internet; fails without them)
#   make e2e-offline        as root, no Docker or internet needed: kind on the project's own engine and
#                           images built from source, a stand-in for Envoy and for the internet: the
#                           scenarios, the propagation figures and the lab (KEEP=1 keeps the cluster)
#   make clean              delete the kind cluster (if any) and built binaries

GO    ?= go
BIN   := bin/egresslab
ARGS  ?=

# The lab binary links Istio's control plane (~200 MB): build it once, and again only
# when a Go source, go.mod/go.sum or a manifest changes.
SOURCES := $(shell find . -path ./tools -prune -o -path ./.cache -prune -o -name '*.go' ! -name '*_test.go' -print) \
           $(shell find manifests labs -name '*.yaml') go.mod go.sum

.PHONY: lab-serviceentry lab handouts diagrams check test race bench e2e e2e-offline clean controlplane-binaries

$(BIN): $(SOURCES)
	@echo "building $(BIN) (the first build compiles Istio and Kubernetes libraries: several minutes; later ones take seconds)" >&2
	$(GO) build -o $(BIN) ./cmd/egresslab

lab-serviceentry: $(BIN)
	@$(BIN) lab serviceentry $(ARGS)

lab: $(BIN)
	@test -n "$(LAB)" || { echo 'usage: make lab LAB=name (bin/egresslab lab list names them) [ARGS="-instructor -backend=kind"]' >&2; exit 2; }
	@case "$(LAB)" in *.yaml) $(BIN) lab -f $(LAB) $(ARGS) ;; *) $(BIN) lab $(LAB) $(ARGS) ;; esac

# The handouts are made from the lab files and committed; a test fails when one is stale.
handouts: $(BIN)
	@for lab in $$($(BIN) lab list -names); do $(BIN) lab $$lab -markdown > labs/$$lab/README.md && echo "labs/$$lab/README.md"; done

diagrams:
	hack/diagrams-check.sh

check: $(BIN)
	@test -n "$(URL)" || { echo 'usage: make check URL=http://host/path [ARGS="-mode ALLOW_ANY -entry FILE"]' >&2; exit 2; }
	@$(BIN) check $(ARGS) $(URL)

# etcd, kube-apiserver and istiod for the local backend, built once into .cache/bin.
controlplane-binaries:
	hack/controlplane-binaries.sh

# Every test (the scenarios on sim), then the scenarios again on the local control plane.
# Both must run: here a backend that cannot start is a failure, not a skip.
# RACE_LIGHT are the packages whose race build needs no Istio or Kubernetes library:
# make test runs them under the race detector (25 s here, warm). RACE_HEAVY, the
# stand-in for Envoy and the lab engine, need a race build of Istio's libraries
# (several minutes cold on 2 cores, 70 s warm): make race runs them.
RACE_LIGHT = ./apps/... ./harness/outcome/ ./internal/syncbuf/ ./harness/backend/kind/internal/appimage/ \
	./harness/backend/kind/internal/cluster/ ./harness/backend/kind/internal/engine/ ./harness/backend/kind/internal/offline/
RACE_HEAVY = ./harness/dataplane/proxy/ ./harness/steps/ ./labs/

test: controlplane-binaries
	$(GO) vet ./...
	EGRESSLAB_REQUIRE_LOCAL=1 $(GO) test ./...
	$(GO) test ./scenarios/... -count=1 -args -backend=local -require-backend
	$(GO) test -race $(RACE_LIGHT)

race:
	$(GO) test -race $(RACE_LIGHT) $(RACE_HEAVY)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./harness/backend/sim/ ./labs/

# Opt-in: a real kind cluster, real Istio, the real jsonplaceholder. Asking for kind and
# not getting it is a failure, with the preflight's reason and fix (not a run of skips).
# KEEP=1 keeps the cluster for the next run.
e2e:
	EGRESSLAB_KEEP=$(KEEP) $(GO) test ./scenarios/... -count=1 -v -timeout 30m -args -backend=kind -require-backend

# Opt-in, as root on Linux: the kind backend with nothing pulled or downloaded but Go
# modules and Debian packages (hack/e2e-offline.sh says each phase and its time). Envoy's
# process is egresslab's stand-in (harness/dataplane/proxy), the internet is apps/internet.
e2e-offline:
	KEEP=$(KEEP) hack/e2e-offline.sh

# clean deletes the lab's kind cluster with the lab's binary; it builds the binary only
# when there is a cluster to delete and no binary to do it (a cold build takes minutes).
clean:
	@if [ -x $(BIN) ]; then $(BIN) clean; \
	elif command -v docker >/dev/null 2>&1 && docker ps -aq --filter label=io.x-k8s.kind.cluster=egresslab 2>/dev/null | grep -q .; then \
	  echo "make clean: kind cluster egresslab exists and $(BIN) does not: building it to delete the cluster"; \
	  $(MAKE) --no-print-directory $(BIN) && $(BIN) clean; \
	else echo "make clean: no $(BIN) and no kind cluster egresslab: nothing to delete but bin/"; fi
	rm -rf bin
