// Package egress speaks livekit-server's egress protocol for track
// egresses, so that the recorder can stand in for livekit/egress: Auto Track
// Egress, StartTrackEgress, ListEgress and StopEgress through livekit-server
// are served by the recorder, on the same Redis.
//
// The protocol (as livekit-server v1.13.5 speaks it; ../shared notes):
//
//   - livekit-server offers each StartEgress (rpc.EgressInternal, topic "")
//     to every worker, which claims it with an affinity: a claim of 1 wins
//     at once, else the highest above 0 within 500 ms; 0 or less is no
//     claim. The start's context lasts about 10 s and is retried under the
//     same egress id.
//   - The worker reports every change through rpc.IOInfo: CreateEgress
//     before StartEgress returns (livekit-server then sends egress_started
//     and lists it), then UpdateEgress with the whole EgressInfo: ACTIVE at
//     the first packet written, ENDING, and COMPLETE or FAILED with the file
//     results (egress_updated, egress_ended). Times are Unix nanoseconds.
//   - StopEgress comes on a per-egress topic (rpc.EgressHandler).
//     livekit-server never ends a track egress itself: the worker does,
//     when the track is unpublished, its participant leaves or the room
//     closes.
//
// What this package holds: Parse checks a request (a track egress to a
// file, S3 or the recorder's own storage; anything else is not claimed,
// GCP and Azure fail with a reason), ObjectKey expands file.filepath as
// livekit/egress does (but {time} and {utc} name the second the file
// starts on, and names from outside are escaped), Info keeps one egress's
// EgressInfo (credentials redacted), Location and ManifestKey name where a
// file and its EG_<id>.json manifest are, and Manifest is that manifest.
//
// In a fleet an egress outlives its instance (shared.go). Its owner keeps
// its record in Redis (Shared): the request, the redacted info, the
// request's credentials sealed (Sealer), and one field per file written by
// the instance writing it. A draining instance hands the egress over with
// its recording (recorder's handover calls HandedOver); the successor
// (TakeOver) answers StopEgress and reports from then on, and the former
// owner only stores its files and marks them stored. After a crash the
// fleet's takeover calls Resume once the recording's claim lapsed: the
// egress goes on in a new file, or, its track gone, ends with the stored
// files. The end lists the files of every instance, in order, waiting for
// those a live instance still stores. A restarted instance whose record
// says the egress was shared stores its recovered file and leaves the
// reporting to the fleet.
package egress
