# The two commands a new user needs:
#   make demo   record a demo participant locally (dev LiveKit server, embedded defaults)
#   make test   run every test against the real components (installs what is missing)
# `make tools` (which `make test` runs first) installs what the tests use: the
# Debian tools (and libopus-dev, which the recorder's build needs) with apt-get, the pinned livekit-server and versitygw into
# ~/.cache/trackrec; once they are there it only looks. `make demo` installs
# the part it needs the same way. Tests never install anything: a missing
# tool fails them with a message naming `make tools`.

GO ?= go
# How long each fuzz target runs within `make test`; longer by hand:
#   make fuzz FUZZTIME=1000000x   (or a duration, e.g. 5m)
# By default each target runs a fixed number of inputs (about 5-15 s each
# here), not a duration: Go 1.26's fuzz coordinator can fail a run with a
# bare "context deadline exceeded" when a duration ends mid-input
# (golang/go#75804, fixed in Go 1.27). FUZZTIME=... sets one budget for all.
FUZZTIME ?=
fuzztime = $(if $(FUZZTIME),$(FUZZTIME),$(1))

.PHONY: demo test tools build bench bench-load fuzz

build:
	$(GO) build -o bin/recorder ./cmd/recorder
	$(GO) build -o bin/publisher ./cmd/publisher

tools:
	$(GO) run ./cmd/testbed install

# The recorder links libopus (live PCM streams): the Debian part comes
# before the build.
demo:
	$(GO) run ./cmd/testbed install debian livekit-server
	$(MAKE) build
	$(GO) run ./cmd/demo -recorder bin/recorder

test: tools
	$(GO) vet ./...
	$(GO) test -race -timeout 18m ./...
	$(MAKE) fuzz

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzTimeline$$' -fuzztime $(call fuzztime,20000x) ./muxer/
	$(GO) test -run '^$$' -fuzz '^FuzzOggWriter$$' -fuzztime $(call fuzztime,12000x) ./muxer/ogg/
	$(GO) test -run '^$$' -fuzz '^FuzzWriter$$' -fuzztime $(call fuzztime,20000x) ./muxer/webm/
	$(GO) test -run '^$$' -fuzz '^FuzzSegment$$' -fuzztime $(call fuzztime,200000x) ./uploader/
	$(GO) test -run '^$$' -fuzz '^FuzzRequests$$' -fuzztime $(call fuzztime,10000x) ./api/

# The recorder under load through a real livekit-server, beside a bare SDK
# subscriber and livekit/egress's audio chain (loadbench); flags with
#   make bench-load BENCH_LOAD='-tracks 300'
BENCH_LOAD ?=
bench-load:
	$(GO) run ./cmd/testbed install debian livekit-server gstreamer
	$(MAKE) build
	$(GO) build -o bin/benchload ./cmd/benchload
	bin/benchload $(BENCH_LOAD)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./muxer/... ./live/...
