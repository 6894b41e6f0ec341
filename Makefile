# The two commands a new user needs:
#   make demo   record a demo participant locally (dev LiveKit server, embedded defaults)
#   make test   run every test against the real components (installs what is missing)

GO ?= go
# How long each fuzz target runs within `make test`; longer by hand:
#   make fuzz FUZZTIME=5m
FUZZTIME ?= 10s

.PHONY: demo test build bench fuzz

build:
	$(GO) build -o bin/recorder ./cmd/recorder
	$(GO) build -o bin/publisher ./cmd/publisher

demo: build
	$(GO) run ./cmd/demo -recorder bin/recorder

test:
	$(GO) vet ./...
	$(GO) test -race -timeout 18m ./...
	$(MAKE) fuzz

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzTimeline$$' -fuzztime $(FUZZTIME) ./muxer/
	$(GO) test -run '^$$' -fuzz '^FuzzOggWriter$$' -fuzztime $(FUZZTIME) ./muxer/ogg/
	$(GO) test -run '^$$' -fuzz '^FuzzWriter$$' -fuzztime $(FUZZTIME) ./muxer/webm/
	$(GO) test -run '^$$' -fuzz '^FuzzSegment$$' -fuzztime $(FUZZTIME) ./uploader/
	$(GO) test -run '^$$' -fuzz '^FuzzRequests$$' -fuzztime $(FUZZTIME) ./api/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./muxer/...
