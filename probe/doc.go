// Package probe owns what the service asks of LiveKit's server API before it
// acts, and whether it is ready to record at all.
//
// # Lookup
//
// [NewLookup] answers recorder.LookupFunc: is the room there, and is the
// participant in it? It asks RoomService.GetParticipant first; only on
// twirp's NotFound does it ask ListRooms (filtered to that one room) to tell
// a missing room ([recorder.NoRoom]) from a missing participant
// ([recorder.NoParticipant]). Both calls share one timeout, fixed at
// construction. twirp reports a call cut by its context as an internal
// error; Lookup reports it as context.DeadlineExceeded (or
// context.Canceled when the caller gave up), so the API can answer 504 (or
// 499) for a slow LiveKit rather than 502 for a broken one.
//
// # Readiness
//
// [Readiness.Check] says whether the service can record: LiveKit answers
// ListRooms and the local directory takes a write (a func() error given at
// construction, so the owner of the directory decides what a write is).
// GET /readyz is unauthenticated, so the check is rationed:
//
//   - a result at most maxAge old (2 s in the service) is served as is;
//   - callers that find no fresh result share the one check in flight;
//   - the check runs detached from any caller, bounded by [CheckTimeout], so
//     a caller that gives up neither cancels it for the others nor leaves
//     its result uncached.
//
// Checks therefore never overlap and start at least maxAge apart: at most
// one LiveKit call and one disk write per maxAge, whatever the request rate.
package probe
