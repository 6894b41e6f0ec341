# Build: docker build -t trackrec .
# Run:   docker run -e LIVEKIT_URL=wss://... -e LIVEKIT_API_KEY=... -e LIVEKIT_API_SECRET=... \
#          -p 8000:8000 -v $PWD/recordings:/recordings trackrec
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/recorder ./cmd/recorder

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/recorder /recorder
ENV LOCAL_DIRECTORY=/recordings APP_PORT=8000
VOLUME /recordings
EXPOSE 8000
# SIGTERM stops every recording and closes its files before exit; give it
# time (docker stop -t 40) beyond SHUTDOWN_TIMEOUT (30s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/recorder"]
