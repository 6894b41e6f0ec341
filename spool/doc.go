// Package spool owns an instance's on-disk state under LOCAL_DIRECTORY: the
// names of track files, the manifest beside each, the pending-room markers
// that carry a room's completion across restarts, crash recovery, sealing a
// closed file (checksum, marker, manifest, upload), and the lock that keeps
// a second recorder out of the directory.
//
// # Layout
//
// Under Dir:
//
//	.lock                                   flock(2) held while a Spool is open; holds the holder's pid
//	{room}/{identity}-{start}-{track}.ogg   a track file (or .webm), named by uploader.TrackKey
//	{room}/{identity}-{start}-{track}.pending  its manifest while the file is written
//	{room}/{identity}-{start}-{track}.json  its manifest once sealed
//	.pending-rooms/{room}/{file}.json       a sealed file whose room's pipeline has not run
//	.no-audio/{room}/{file}                 a file a crash left without audio, set aside
//
// {room}, {identity} and {track} are escaped by uploader.Segment, so an
// outside name is always one path segment and never starts with a dot: the
// dotted names are the spool's own. A room whose folder would equal one of
// Options.Reserved (ignoring case; the mixes' folder with local storage)
// has its first character escaped as well ("mixdown" is stored in
// "%6Dixdown"), which no other name escapes to. A file's object key is its
// path under Dir after Options.KeyPrefix. {start} is the file's first whole
// UTC second. A name already taken (the same track resubscribed within the
// second) takes a numbered track id: TR_x_2, TR_x_3, up to 100.
//
// # Lock
//
// Open takes an exclusive, non-blocking flock on Dir/.lock and writes its
// pid there; a directory held by another process is refused with ErrLocked
// before anything in it changes, so two recorders never repair, seal or
// upload each other's files. The lock dies with the process; the file stays.
//
// # Seal
//
// A track file is closed with fsync. Seal then, in this order:
//
//  1. computes the file's size and SHA-256 and completes its manifest;
//  2. writes the pending-room marker (with Options.Markers);
//  3. writes the manifest beside the file;
//  4. removes the pending manifest;
//  5. queues the file for upload, then its manifest, which waits for the
//     file: a manifest never lands in the store before what it describes.
//
// Every JSON file is written to a temporary name, synced, renamed into
// place, and its folder synced, so each step is durable before the next
// starts. A crash anywhere leaves something Recover completes: before 3 the
// file has no manifest and is sealed again (marker rewritten; a marker that
// matches the file's checksum becomes its manifest as it was); after 3 it is
// closed, and queued again unless the spool is the store. The marker comes
// before the manifest so that no closed file is ever without its marker
// while its room still waits.
//
// # Recovery
//
// Recover, run once at start-up, walks the room folders:
//
//   - a track file without a manifest was being written: muxer.Repair
//     completes it in place, and it is sealed (Recovered set, counts
//     unknown) with its pending manifest, or, when that never reached the
//     disk, one rebuilt from the file name (escaped names stay escaped);
//   - a file with headers and no audio is moved to .no-audio/, with its
//     pending manifest, so it is reported once;
//   - a closed file (it has a manifest) and a manifest whose file is gone
//     (stored and removed) are queued again, unless the store is Dir itself
//     (Options.SpoolIsStore) or there is no upload queue;
//   - a file whose start cannot be parsed from its name (the name pattern
//     lets month 13 through) is repaired, described and stored, but gets no
//     marker: a mix places tracks by their start, and one without would
//     fail its whole room. Its RecoveredFile.Error says so.
//
// Then it loads the markers into Recovery.Rooms, each track with the
// uploads just queued for it, and prunes empty marker folders. Markers left
// by an earlier run when Options.Markers is off are kept, with one warning:
// a pipeline configured later still completes those rooms. ClearMarkers
// removes the markers of a room whose pipeline ran; a rerun after a crash in
// between is harmless, as the pipeline's keys and event id are stable.
package spool
