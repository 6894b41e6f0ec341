// Package fleet lets any instance of the recorder answer for all the
// instances that share one message bus (Redis in production): it places a
// start, carries a stop to the instance that owns the recording, and gathers
// every instance's list. The calls between instances are psrpc requests
// (github.com/livekit/psrpc, the RPC layer of livekit-server and Egress),
// defined by hand here rather than generated: one service, "TrackrecFleet",
// whose messages are wrapperspb.BytesValue carrying JSON.
//
// Each instance runs a [Fleet] over its own recorder, a [Local]: it serves
// the requests of the other instances (and its own: a call to this instance
// goes over the bus like any other) and sends its own.
//
// # Placement of a start
//
// A start is offered to every instance, and each answers with a claim (its
// affinity) or stays silent:
//
//	Owns(room, participant)               1     it records them already: the start is idempotent there
//	tracks >= capacity, or capacity <= 0  none  a full instance takes no new recording
//	HasRoom(room)                         0.995 its bot is in the room: the recording joins it
//	otherwise                             0.99 * free/capacity, in (0, 0.99]
//
// in this order, with tracks and capacity from Load. A claim of 1 (the
// owner's) wins at once, even over another instance whose bot is in the
// room too; otherwise the highest claim received within 200 ms of the first
// wins (ties: the first). An instance with a bot in the
// room that is full does not claim, so the start goes to another instance
// (a second bot in that room) rather than fail. When no instance claims
// within a second, Start returns [ErrFull]: the caller answers 503 with
// Retry-After.
//
// # Handover
//
// A draining instance hands each recording over with [Fleet.HandOver],
// placed as a start is but with no owner's claim: the draining instance is
// full (Load), so the recording goes to another instance, whose Local
// HandOver goes on with it; ErrFull when none has room. A track egress's
// recording carries its track: the instance taking it over hands it to its
// egress worker (Supervisor.Tracks), which reports the egress from then on.
//
// # Stop and owner
//
// A stop, and an owner lookup ([Fleet.Owner]), are claimed only by the
// instance whose Local Owns the key (room, participant, and a track
// egress's track): 1, or 0.5 while it is
// Draining, since its successor holds the recording too during a handover
// and a stop must reach the one that goes on; the highest claim wins (1 at
// once, else the best within 200 ms of the first). When
// none claims within a second there is no such recording anywhere:
// [ErrNotFound] (the caller's 404). A stop answers once the owner's Local
// returned, that is with its final recording after its files closed.
//
// # List and membership
//
// psrpc cannot say which servers exist or which one sent a response, so the
// instances announce themselves on the bus: each publishes "alive" every 5 s
// and "leave" when it closes, and forgets an instance it has not heard from
// for 15 s. A new instance first sends probes until its own comes back (New
// fails when none does within the timeout), which proves its subscriptions
// are live; the others answer a probe with "alive", so the newcomer learns
// the fleet within a round trip. An instance joins the others' lists only
// with its first "alive", sent after its probe came back.
//
// List asks every instance and waits until each known instance answered, or
// until the timeout. The entries of those that answered are returned, sorted
// by instance; the known instances that did not answer are named in an
// [*UnansweredError], never left out silently. An instance that died without
// a "leave" is named so until it is forgotten (so is one whose "leave" was
// lost: Redis publishes are queued, and a process that exits at once may
// not send it).
//
// # Errors across instances
//
// A Local reports the errors below by wrapping them (errors.Is); each
// crosses the bus as a psrpc error with a code and, in its details, a reason
// and the instance that failed, so the caller's error is again errors.Is the
// same sentinel, keeps the Local's message, and is errors.Is the psrpc code:
//
//	ErrNotFound       not_found       psrpc.NotFound
//	ErrNoRoom         no_room         psrpc.NotFound
//	ErrNoParticipant  no_participant  psrpc.NotFound
//	ErrOwned          owned           psrpc.AlreadyExists
//	ErrFull           full            psrpc.ResourceExhausted
//	ErrShuttingDown   shutting_down   psrpc.Unavailable
//	ErrUnreachable    unreachable     psrpc.UpstreamServerError
//	context.DeadlineExceeded  deadline  psrpc.DeadlineExceeded
//	context.Canceled          canceled  psrpc.Canceled
//	anything else     (none)          psrpc.Unknown, message kept
//
// An instance that claimed but did not answer within the timeout gives an
// error that is errors.Is context.DeadlineExceeded (and
// psrpc.ErrRequestTimedOut).
//
// # Timeout
//
// [Options].Timeout bounds every call, end to end: the claims, and the
// remote Local's work (a start's join, a stop's closing of files), whose
// context carries that deadline. It must cover JOIN_TIMEOUT. The caller's
// context can shorten it.
package fleet
