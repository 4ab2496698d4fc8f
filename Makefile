# visitord — the two set-up commands are `make run` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: run test test-browser lint bench bench-cluster bench-redis bench-profile bench-go fuzz build image k8s-test geoip-fixture

## run: the service with an embedded in-memory Redis, plain-HTTP cookies and the demo site;
## `make run VISITORD_DEMO_ORIGINS=http://devbox.lan:8080` adds origins to the demo site.
## It runs the built binary, not `go run`: go run exits 1 when interrupted, so Ctrl-C
## would end in make's "Error 1" although visitord drained and exited 0.
## Metrics and pprof listen on loopback only (VISITORD_METRICS_ADDR, default here 127.0.0.1:9090).
run: build
	VISITORD_COOKIE_SECURE=false VISITORD_DEMO_ORIGINS='$(VISITORD_DEMO_ORIGINS)' \
	  VISITORD_METRICS_ADDR='$(or $(VISITORD_METRICS_ADDR),127.0.0.1:9090)' bin/visitord

## test: every test of the service against real redis-server processes the tests start themselves,
## under the race detector. -parallel 4: most tests wait on a redis-server of their own starting,
## not on the CPU. The k8s manifests are checked by k8s-test (CI runs both): kustomize with the
## Kubernetes API types takes longer to compile than the whole service.
test:
	$(GO) test -race -count=1 -parallel 4 -timeout 15m $$($(GO) list ./... | grep -v '/k8s$$')

## test-browser: the widget, demo shop and console in headless Chromium (/usr/bin/chromium, playwright-core)
test-browser:
	cd internal/web/browser && npm ci --no-audit --no-fund && node --test --test-reporter=spec

## lint: go vet and gofmt
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## bench: the load comparison of visitord against its floor in one run (cmd/loadbench, ~25 s):
## one table of requests/s, p50/p99, CPU per request of the service, redis-server and the load
## generator, Redis commands and allocations per request, Redis bytes per visitor and page view.
## BENCH_FLAGS lengthens or changes it, e.g. BENCH_FLAGS='-duration 10s -runs 3 -load corpus'.
bench: build
	$(GO) build -o bin/loadbench ./cmd/loadbench
	bin/loadbench -visitord bin/visitord $(BENCH_FLAGS)

## bench-cluster: bench against a Redis Cluster of 3 masters that loadbench starts (-cluster 3):
## visitord alone (the floor speaks to one Redis), then a table per node of its share of the
## page-view scripts, Redis commands, round trips and redis-server CPU per page view, the totals
## and whether a node is hot (a share more than 10 points from a third).
bench-cluster: build
	$(GO) build -o bin/loadbench ./cmd/loadbench
	bin/loadbench -visitord bin/visitord -cluster 3 $(BENCH_FLAGS)

## bench-redis: redis-server's instructions per page view, floor and visitord, counted by
## valgrind's callgrind (the same count on a busy machine; about two minutes)
bench-redis: build
	$(GO) build -o bin/loadbench ./cmd/loadbench
	bin/loadbench -visitord bin/visitord -callgrind $(BENCH_FLAGS)

## bench-profile: bench, then a CPU profile of visitord under load: its top, and the project's
## own functions by share, each with the library and runtime work it calls (-show keeps only
## frames of internal/; the rest of a stack counts to the nearest of them)
bench-profile: build
	$(GO) build -o bin/loadbench ./cmd/loadbench
	bin/loadbench -visitord bin/visitord -memory 0 -profile bin/visitord.cpu.pprof $(BENCH_FLAGS)
	$(GO) tool pprof -top -nodecount 25 bin/visitord bin/visitord.cpu.pprof 2>/dev/null | head -35
	$(GO) tool pprof -top -nodecount 25 -show 'visitord/internal/' bin/visitord bin/visitord.cpu.pprof 2>/dev/null | sed -n '/flat%/,$$p'

## bench-go: go test benchmarks (page view, UA, GeoIP, chat, live view, retention job) with allocations
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s -count=1 ./internal/...

## fuzz: fuzz the track body decoder for 30 s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeTrack -fuzztime 30s ./internal/httpapi/

## build: a static binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/visitord ./cmd/visitord

## image: the container image visitord:$(VERSION) (Dockerfile; needs a Docker engine)
image:
	docker build --build-arg VERSION=$(VERSION) -t visitord:$(VERSION) .

## k8s-test: render the kustomizations in k8s/ and check them against the Kubernetes API types
k8s-test:
	$(GO) test -count=1 ./k8s/

## geoip-fixture: the test GeoIP database in bin/ (known answers, see geoip/README.md)
geoip-fixture:
	mkdir -p bin && $(GO) run ./geoip/gen bin/fixture-city.mmdb
