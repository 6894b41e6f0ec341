// Package completion owns room completion: deciding when every recording of
// a room is over and every file it produced is stored, and then running the
// room's pipeline (mixdown, pipeline webhook) once with every track.
//
// # Rules
//
// Tracks. TrackClosed hands over one sealed track of a room. The room keeps
// its tracks until it completes; then they are handed to the run, and the
// room starts afresh (a later recording in it is a new completion). With no
// Pipeline nothing is kept at all: every call but Stop and Close does nothing.
//
// Busy and idle. The caller says when a room has a recording (RoomBusy:
// starting, running or files still closing) and when it has none
// (RoomIdle). Both are states, not counts: calling either twice is the same
// as once. A room is idle until told otherwise.
//
// Settle. A room that is idle and has tracks completes once it has stayed
// so for Settle. RoomIdle (re)starts the settle; RoomBusy cancels it, and
// wins over a settle timer that already fired but whose run has not taken
// the tracks yet. A track closed in an idle room that is not settling starts
// the settle; one closed while the room settles does not restart it.
// Restore adds recovered tracks and settles every restored room that is not
// busy.
//
// Runs. A completed room's run waits for each track's uploads (state
// waiting_uploads), then for a turn: at most Concurrency pipelines run at
// once, the others wait first come first served (queued). The pipeline then
// runs (running) with every track.
//
//   - Success: markers cleared, state done with the outputs.
//   - Failure other than ErrRetryLater: markers cleared (the pipeline ran to
//     its end; a failed mix may still have sent its webhook), state failed.
//   - ErrRetryLater: the turn is given back, state retrying with the error,
//     and the pipeline runs again after RetryDelay, then twice as long each
//     time, at most 30 minutes, while the process lives. Markers stay.
//   - Cut short: an error once Stop was called, or once Close cancelled the
//     pipeline's context (a mix whose upload queue closed under it). Markers
//     stay, so the next process reruns the room; state failed.
//
// Markers are the spool's pending-room files: they carry a room that has not
// run to its end across a restart.
//
// History. Runs lists at most History runs, oldest first. When it is full
// the oldest finished run (done or failed) goes first, else the oldest.
//
// # Shutdown
//
// Stop: settle timers stop and rooms still settling are dropped from memory
// (their markers stay; they complete in the next process); from then on no
// room completes and new tracks are not kept. A pipeline already running
// goes on, so the upload drain that follows can let it finish; a run still
// waiting for its uploads or its turn does not start its pipeline (the
// upload queue is closing, so a mix could not be stored): it fails with its
// markers kept and runs whole in the next process. Close (after Stop and
// the upload drain) cancels the pipelines' context, ends runs still waiting
// (uploads, their turn, a retry delay) as failed with their markers kept,
// and returns once every run has returned. Close implies Stop.
package completion
