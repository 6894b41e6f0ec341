// Package bot is a LiveKit participant that joins a room hidden (a recorder
// grant, egress kind, no publish rights, auto-subscribe off), publishes
// nothing, and subscribes only to the audio tracks of the participants it is
// asked to record. It follows the room (late publishes, republishes,
// reconnects) and reports what happens to a Handler.
//
// # Subscriptions
//
// The bot asks for a publication (SetSubscribed(true)) when all of these
// hold: it is audio (video and data are never asked for); its participant's
// identity is wanted (Record was called and Forget was not called since,
// or RecordTrack named the track and ForgetTrack did not since);
// the bot has not left; and the bot has not asked for that track SID
// already. It asks on each of these occasions:
//
//   - Record, for every publication identity has now;
//   - a publication appearing (a late publish, or a republish, which
//     LiveKit gives a new track SID);
//   - a wanted participant connecting, for the publications that came with
//     it (the SDK may offer them before it reports the participant);
//   - an unsubscribe of a track that is still published, by a session still
//     in the room, of a wanted participant: the end of an older
//     subscription that lands after a quick Forget and Record must not
//     leave the track unasked;
//   - a reconnect, for every wanted participant: a restarted server session
//     has no subscriptions even where the track SIDs are the same, so every
//     request is forgotten and made again (the server ignores one for a
//     track already subscribed).
//
// A request is forgotten, so that the next occasion asks again, when the
// subscription fails, when SetSubscribed returns an error, and when the
// track is unsubscribed or unpublished.
//
// A subscribed audio track of a wanted participant is handed to
// Handler.TrackSubscribed with a fresh TrackInfo.Subscription number. When
// the participant is no longer wanted, or the handler does not take the
// track, the bot unsubscribes. Forget unsubscribes from every track the bot
// asked for of that identity; the tracks handed over end on their own (EOF
// or the reader's deadline) and get no TrackEnded.
//
// Handler.TrackEnded ends a handed-over subscription at most once, with the
// TrackInfo it was handed over with: on an unsubscribe the SDK reports for
// that subscription's remote track, or when its track is unpublished. A late
// unsubscribe of an older subscription never ends a newer one of the same
// track SID, and a TrackEnded never overtakes the TrackSubscribed it ends.
//
// # Participants
//
// ParticipantJoined is reported when a wanted identity connects.
// ParticipantLeft is reported when a wanted identity disconnects and no
// newer session of it is in the room (the SDK drops the old session before
// it reports it, so one still present replaced it). intentional is true only
// when the participant asked to leave (CLIENT_INITIATED); any other reason
// is a dropped connection that may come back. ParticipantSID tells the
// current session from an older one.
//
// # Disconnects and the reconnect watchdog
//
// When the SDK reports the room lost, the bot reports Disconnected once, with
// recoverable false when the server's reason means the room or the bot is
// gone on purpose (ROOM_DELETED, ROOM_CLOSED, PARTICIPANT_REMOVED,
// DUPLICATE_IDENTITY, CLIENT_INITIATED) and true for anything else (a server
// shutdown, a signal or media failure, no reason at all), which a new bot
// may undo by joining again.
//
// When the SDK starts reconnecting, a watchdog of Config.ReconnectTimeout
// (default 5 s) is armed once; further reconnecting events do not extend it.
// A reconnect disarms it. If it fires first, the bot gives up: it
// disconnects and reports Disconnected("reconnect timed out", true), because
// the SDK can stall half-reconnected after a server restart.
//
// Once the bot has left (Leave), given up, or reported a disconnect, it
// reports nothing more: a dead connection's late events must not reach a
// handler that may serve a new bot by now. In particular Disconnected never
// follows Leave.
package bot
