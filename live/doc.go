// Package live serves what the recorder is writing, as it writes it, to
// consumers such as real-time transcription: per participant, as the
// recording's Ogg Opus pages byte for byte or as PCM, resumable from the
// track's file, and never at the recording's expense.
//
// # Tap and ring
//
// Each recorded track has a Stream, the muxer's Tap (muxer.Options.Tap):
// the muxer passes it the header pages when the file opens (kept for every
// consumer to come), each page it writes and each packet its container
// took, fillers included, on the raw 48 kHz timeline. While nobody listens
// a packet costs one atomic load. While anyone listens, each page and
// packet is copied once into the stream's ring, whatever the number of
// consumers, and each consumer reads the ring at its own pace through a
// cursor. A consumer whose next entry is older than Options.MaxLag is
// closed (ErrBehind); a ring about to overwrite an entry a cursor has not
// read grows instead (a long silence is written at once), so only lag
// closes a consumer. The last consumer to go frees the ring.
//
// While it is listened to, a track is moved on through silences
// (muxer.Track.Advance): 40 ms after its last packet while LiveKit says it
// is muted, 2 s otherwise, so that PCM keeps pace with the wall clock
// through a mute or a pause; the file holds the same silence either way.
//
// # Sessions
//
// Hub.Open checks a Request and finds the participant (ErrNotFound when it
// is not recorded here); Session.Run then serves it to a Sink until the
// track ends (or, following the participant, until its recording ends).
//   - Ogg: the header pages, then the file's pages as written. Following a
//     republished track, a new logical stream (its own headers) after a
//     "track" message.
//   - PCM: libopus decodes at 48 kHz (live/libopus) and live/resample
//     brings it to the rate asked for, centred on each output sample:
//     output k is decoded position k×48000/rate of the file, exactly.
//     Sample n of a session plays at its start message's instant plus
//     n/rate; between two tracks the time is silence (up to a minute).
//   - From: the file is read back from disk (ogg.ReadPageAt) from the page
//     holding the position (PCM: 3 s earlier, decoded and dropped, so the
//     decoder's state is that of a decode from the start), in passes until
//     one is short; then the session attaches to the ring and goes on after
//     the last page (Ogg, by sequence number) or packet (PCM, by position)
//     the file gave. Packets of the page still pending wait until it
//     reaches the file. Nothing is lost or sent twice.
//
// Messages (Message, JSON over a WebSocket): start, track, position,
// muted, unmuted, track_ended, end; the README lists their fields.
package live
