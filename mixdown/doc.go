// Package mixdown starts what runs once a room's recordings are complete.
//
// Two pipelines exist:
//
//   - The built-in mixdown: [Mix] aligns a room's track files on their
//     wall-clock starts and mixes them with ffmpeg, in one pass, into one MP3
//     or Ogg Opus file; [Manifest] describes the result and its inputs.
//   - The pipeline webhook: a [Notifier] POSTs a [RoomEvent] (the room's track
//     manifests and, if any, the mixdown's manifest) to a URL, signed the way
//     LiveKit signs its webhooks, so that a receiver verifies it with
//     LiveKit's own webhook.Receive. In a fleet, a room that completed
//     without a dead instance's files lists them as Missing
//     ([Pipeline.CompleteMissing]), and [Pipeline.Update] sends each that
//     arrives later in a recordings_updated event.
//
// # Timing
//
// Track files begin exactly on the UTC second their name carries, and are
// gap-free, so a track's offset in the mix is its start minus the earliest
// start: a whole number of seconds, applied as a sample-exact adelay.
// The mix lasts from the earliest start to the latest end.
//
// MP3 is not sample-exact by itself: libmp3lame primes the stream with 1105
// samples (576 of encoder delay plus the decoder's 529) and pads the last
// frame to 1152 samples. ffmpeg's mp3 muxer records both in the Xing/LAME
// header, which it can only write when the output is seekable (a file, not a
// pipe), and ffmpeg's decoder (and other gapless-aware players) trims them,
// so the decoded output begins at the earliest start and lasts exactly as
// long as the mix. ffprobe's reported duration and start_time do not apply
// that trim (start_time 0.023 s, duration about 28 ms too long at 48 kHz),
// which is why [Mix] measures the duration by decoding. A player that ignores
// the LAME header plays everything about 23 ms late. Ogg Opus carries its
// pre-skip (312 samples from libopus) in OpusHead and trims the end with the
// last page's granule position, so decoders play it sample-exactly;
// ffprobe's duration there also includes the pre-skip.
package mixdown
