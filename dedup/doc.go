// Package dedup owns telling a first delivery from a repeat: LiveKit sends a
// webhook again when it gets no answer in time, and relays may replay one,
// so the receiver acts on an event id once.
//
// [Memory] is the in-process implementation, for a single instance. It
// remembers an id for a TTL (default [DefaultTTL], 1 h: LiveKit retries
// within minutes) and at most max ids (default [DefaultMax]); when full it
// forgets the oldest first. Ids are kept as SHA-256 sums, so memory is
// bounded by the count, whatever an id's length. Instances behind one load
// balancer need a shared implementation of the same question.
package dedup
