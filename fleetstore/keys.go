package fleetstore

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// CheckPrefix reports whether prefix can start this package's keys: 1 to
// 128 of A-Z a-z 0-9 . _ : -. Braces (Cluster hash tags) and glob
// characters (SCAN patterns) are refused so a prefix never changes what a
// key or a pattern means. NewLeases and NewDedup panic on a prefix it
// refuses; configuration should check with it first.
func CheckPrefix(prefix string) error {
	if prefix == "" || len(prefix) > 128 {
		return fmt.Errorf("fleetstore: key prefix must be 1 to 128 characters, got %d", len(prefix))
	}
	for _, r := range prefix {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == ':' || r == '-'
		if !ok {
			return fmt.Errorf("fleetstore: key prefix %q: only A-Z a-z 0-9 . _ : - are allowed", prefix)
		}
	}
	return nil
}

// mustConfig panics on what the constructors cannot work with.
func mustConfig(rc any, prefix string, ttl time.Duration) {
	if rc == nil {
		panic("fleetstore: nil redis client")
	}
	if err := CheckPrefix(prefix); err != nil {
		panic(err.Error())
	}
	if ttl < time.Millisecond {
		panic(fmt.Sprintf("fleetstore: ttl %v is under 1ms", ttl))
	}
}

// segment encodes a name from outside for a key. The URL-safe base64
// alphabet has no ':', '.', '{', '}' or glob characters, so a segment never
// runs into its neighbours, and two names never share one.
func segment(name string) string { return base64.RawURLEncoding.EncodeToString([]byte(name)) }

// Key names one recording: a participant of a room, or one track of theirs
// (a track egress).
type Key struct {
	Room, Participant string
	Track             string `json:",omitempty"` // empty: every audio track of the participant
}

func (k Key) String() string {
	if k.Track != "" {
		return fmt.Sprintf("room %q participant %q track %q", k.Room, k.Participant, k.Track)
	}
	return fmt.Sprintf("room %q participant %q", k.Room, k.Participant)
}

// id is the key's encoded name: the same as before tracks were named, for
// a whole participant.
func (k Key) id() string {
	s := segment(k.Room) + "." + segment(k.Participant)
	if k.Track != "" {
		s += "." + segment(k.Track)
	}
	return s
}

func (k Key) check() error {
	if k.Room == "" || k.Participant == "" {
		return errors.New("room and participant must not be empty")
	}
	return nil
}

// tag is the key's Cluster hash tag: its lease and its token counter share
// it, so one script may touch both.
func (k Key) tag() string { return "{" + k.id() + "}" }
