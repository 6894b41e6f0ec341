// Package e2e holds the end-to-end tests: the recorder binary against a real
// livekit-server (testbed), real publishers, and ffmpeg/ffprobe judging the
// files. It has no code of its own outside its tests.
package e2e
