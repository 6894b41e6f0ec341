package recorder

// State is where a recording is in its lifecycle.
type State string

// Recording states. Every recording ends in a final state (Stopped or
// Failed) with a reason.
const (
	StateStarting  State = "starting"  // the bot is joining
	StateWaiting   State = "waiting"   // in the room, no audio from the participant yet
	StateRecording State = "recording" // at least one track is being written
	StateAway      State = "away"      // the participant dropped; waiting for a reconnect
	StateStopping  State = "stopping"  // files are being closed
	StateStopped   State = "stopped"   // final: every file is closed
	StateFailed    State = "failed"    // final: the start failed; nothing was recorded
)

// transitions lists where each state may go. A state missing from a list
// cannot follow it: a stopped recording never records again, a stopping one
// never takes a new track.
var transitions = map[State][]State{
	StateStarting:  {StateWaiting, StateRecording, StateFailed}, // a track can come before the start returns
	StateWaiting:   {StateRecording, StateAway, StateStopping},
	StateRecording: {StateWaiting, StateAway, StateStopping},
	StateAway:      {StateWaiting, StateRecording, StateStopping},
	StateStopping:  {StateStopped},
}

// Final says whether s ends the lifecycle.
func (s State) Final() bool { return s == StateStopped || s == StateFailed }

// can says whether a recording in state s may move to next.
func (s State) can(next State) bool {
	for _, n := range transitions[s] {
		if n == next {
			return true
		}
	}
	return false
}
