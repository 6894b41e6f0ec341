// Package spool owns an instance's on-disk state under LOCAL_DIRECTORY: the
// names of track files, the manifest beside each, the pending-room markers
// that carry a room's completion across restarts, crash recovery, and
// sealing a closed file (checksum, marker, manifest, upload).
package spool
