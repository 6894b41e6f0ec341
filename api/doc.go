// Package api owns the recorder's HTTP interface: start, stop and list
// recordings, LiveKit's webhook receiver, metrics, liveness and readiness.
// openapi.yaml describes every route; a test keeps the two in step.
//
// # Requests
//
// Start and stop take one JSON object {"room", "participant"} (any JSON
// media type, at most 64 KiB, unknown fields refused). Names are non-empty
// UTF-8 without control characters, at most [MaxNameBytes]; they are passed
// on as given, never trimmed or rewritten.
//
// # Errors
//
// Every error is JSON {"error": "..."}, echo's own 404/405/413 included. A
// recorder error maps to a status:
//
//	recorder.ErrNotFound, ErrNoRoom, ErrNoParticipant  404
//	recorder.ErrOwned (another instance records it)    409
//	recorder.ErrFull                                   503, Retry-After: 5
//	recorder.ErrShuttingDown                           503, Retry-After: 10
//	bot.ErrUnreachable, recorder.ErrLookup             502
//	context.DeadlineExceeded (LiveKit too slow)        504
//	context.Canceled (the client gave up)              499
//	anything else                                      500
//
// # Webhooks
//
// POST /recordings/webhooks verifies LiveKit's signature (401 otherwise)
// and acts on an event id once: a [Dedup] says whether it is the first
// delivery, and a repeat answers 200 "duplicate". When the Dedup cannot
// tell, the answer is 503 and nothing is acted on; LiveKit sends it again.
//
// # Readiness
//
// GET /readyz is unauthenticated and answers 503 with the reason while the
// service cannot record; [Options].Ready should be rationed (probe.Readiness
// serves one check per 2 s to any number of callers).
package api
