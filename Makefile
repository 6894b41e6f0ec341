# The two commands a new user needs:
#   make demo   record a demo participant locally (dev LiveKit server, embedded defaults)
#   make test   run every test against the real components (installs what is missing)

GO ?= go

.PHONY: demo test build bench

build:
	$(GO) build -o bin/recorder ./cmd/recorder
	$(GO) build -o bin/publisher ./cmd/publisher

demo: build
	$(GO) run ./cmd/demo -recorder bin/recorder

test:
	$(GO) vet ./...
	$(GO) test -race -timeout 18m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./muxer/...
