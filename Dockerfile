# Build: docker build -t trackrec .
# Run:   docker run -e LIVEKIT_URL=wss://... -e LIVEKIT_API_KEY=... -e LIVEKIT_API_SECRET=... \
#          -p 8000:8000 -v $PWD/recordings:/recordings trackrec
FROM golang:1.26-bookworm AS build
# libopus: live PCM streams decode with the reference decoder (cgo).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/recorder ./cmd/recorder

# ffmpeg is the built-in mixdown's mixer (MIXDOWN=builtin, the default);
# libopus0 decodes live PCM streams; track recording needs nothing else.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libopus0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /recordings recorder \
 && mkdir -p /recordings && chown recorder /recordings
COPY --from=build /out/recorder /usr/local/bin/recorder
USER recorder
ENV LOCAL_DIRECTORY=/recordings APP_PORT=8000
VOLUME /recordings
EXPOSE 8000
# SIGTERM stops every recording, closes its files and drains uploads before
# exit: give it SHUTDOWN_TIMEOUT + DRAIN_TIMEOUT (docker stop -t 100).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/recorder"]
