package recorder

import "testing"

func TestTransitions(t *testing.T) {
	all := []State{StateStarting, StateWaiting, StateRecording, StateAway, StateStopping, StateStopped, StateFailed}
	allowed := map[[2]State]bool{
		{StateStarting, StateWaiting}: true, {StateStarting, StateRecording}: true, {StateStarting, StateFailed}: true,
		{StateWaiting, StateRecording}: true, {StateWaiting, StateAway}: true, {StateWaiting, StateStopping}: true,
		{StateRecording, StateWaiting}: true, {StateRecording, StateAway}: true, {StateRecording, StateStopping}: true,
		{StateAway, StateWaiting}: true, {StateAway, StateRecording}: true, {StateAway, StateStopping}: true,
		{StateStopping, StateStopped}: true,
	}
	for _, from := range all {
		for _, to := range all {
			if got, want := from.can(to), allowed[[2]State{from, to}]; got != want {
				t.Errorf("%s -> %s allowed = %v, want %v", from, to, got, want)
			}
		}
		// Every state reaches a final one.
		if !from.Final() && len(transitions[from]) == 0 {
			t.Errorf("%s is a dead end", from)
		}
	}
	for _, s := range []State{StateStopped, StateFailed} {
		if !s.Final() || len(transitions[s]) != 0 {
			t.Errorf("%s must be final with no way out", s)
		}
	}
}
