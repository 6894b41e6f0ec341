// Package testbed runs the real components that trackrec's tests and demo
// depend on: a loopback livekit-server, a Versity S3 Gateway, a scripted Opus
// publisher, the Debian tools used to inspect recordings, and a fleet's
// redis-server and haproxy.
//
// Installing and running are separate:
//
//   - Install (wired as `go run ./cmd/testbed install`, which `make tools`,
//     `make test` and `make demo` run first) puts everything in place: the
//     Debian packages ffmpeg, opus-tools, oggz-tools, mkvtoolnix,
//     redis-server and haproxy with apt-get (as root; `apt-get update` runs
//     once, and only when a package is missing), and the pinned
//     livekit-server (LiveKitServerVersion) and versitygw (VersityVersion),
//     built with `go install` into CacheDir as CacheDir/NAME-VERSION/BINARY.
//     What is there already costs a lookup.
//   - Everything else only looks up: StartLiveKit, StartS3, StartRedis,
//     StartHAProxy, CheckTools, LiveKitServerBin and VersityBin never run
//     apt-get or `go install`.
//     A missing tool is an error wrapping ErrNotInstalled that names the tool
//     and InstallCommand, so a test fails saying what to run.
//
// Builds are serialised across processes with a file lock in the cache
// folder, and a binary appears there only complete (built aside, renamed), so
// concurrent installers and tests never see half a file.
package testbed
