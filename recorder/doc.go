// Package recorder owns the lifecycle of recordings: one participant of one
// room each, one bot per room serving every recording of the room, one file
// writer per subscribed track, and the replacement of a bot that lost
// LiveKit. What happens on disk is the spool's (package spool), what happens
// once a room is idle is room completion's (package completion), who may
// record whom is ownership's, and which webhook starts what is autorecord's:
// the supervisor holds them behind the small interfaces it defines (Spool,
// Rooms, Owners).
//
// # Lifecycle
//
// A recording's State moves only along the transitions table (state.go):
//
//	starting  -> waiting | recording | failed
//	waiting   -> recording | away | stopping
//	recording -> waiting | away | stopping
//	away      -> waiting | recording | stopping
//	stopping  -> stopped
//
// stopped and failed are final and carry a reason (StopReason): stopped by
// request, participant left, participant did not reconnect within
// REJOIN_TIMEOUT, participant did not join within ARM_TIMEOUT, room finished,
// LiveKit connection lost, recorder shutting down; failed holds the start's
// error. A recording is stopped only once every one of its files is closed
// and sealed.
//
// # Starts and stops
//
//   - A start of a running recording returns it (created false); concurrent
//     starts of one participant share one recording and one join.
//   - A start while the participant's previous recording is still closing
//     waits for that stop to finish (files closed, claim released), then
//     makes a new recording with new files: a leave and rejoin within a
//     second is two recordings, nothing between them lost, never refused.
//   - Unless armed (WaitForParticipant), a start asks LiveKit first and
//     joins nothing for a room or participant that is not there. An armed
//     recording whose participant never comes stops after ARM_TIMEOUT.
//   - At most MAX_RECORDINGS run at once; a start beyond is ErrFull, and so
//     is one Admission refuses (MAX_TRACKS, the CPU guard: package
//     capacity), asked with the tracks recorded now and the other starts
//     under way.
//   - The track that ends is the subscription that ended (its bot-assigned
//     Subscription number), never a fresh subscription of the same track.
//
// # Handover
//
// Drain (a SIGTERM in a fleet) hands each recording to a Successor: another
// instance starts it under the same id with HandOverFrom, taking the claim
// from this one in one step (Transferer), so the recording is never
// unclaimed and this instance's renewal failing then is no reason to stop.
// The successor's tracks subscribe and write nothing until, once a packet
// arrived (or after firstAudioWait for a muted participant), it names a cut
// cutAhead from then; it writes what arrives from the cut on, this instance
// what arrived before, read by read on each side (span), and then its
// files close. A recording no successor takes is stopped as Shutdown stops
// it. The successor's RecordingInfo.HandoverAt is the cut. A track
// egress's recording is handed over the same way; its Output hears of it
// (HandedOver), since the successor's egress worker reports the egress
// from then on. Track recordings are wanted fleet-wide too (Intents), so a
// takeover resumes them with their egress after a crash.
//
// # Bots
//
// A bot joins a room on its first recording and leaves when it records
// nobody. A bot that loses LiveKit is replaced (rejoin.go): the recordings
// whose participant was present wait, away, up to RECONNECT_TIMEOUT for a
// new bot and their participant; each bot's events carry its generation, so
// a dead connection's late events cannot touch the new bot's tracks.
package recorder
