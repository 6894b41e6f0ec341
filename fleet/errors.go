package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/livekit/psrpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// Errors a Local wraps so that a caller on any instance can tell them apart
// (the API's status codes); doc.go has their wire codes.
var (
	ErrNotFound      = errors.New("recording not found")
	ErrNoRoom        = errors.New("room does not exist")
	ErrNoParticipant = errors.New("participant is not in the room")
	ErrOwned         = errors.New("participant is recorded by another instance")
	ErrFull          = errors.New("every instance is at capacity")
	ErrShuttingDown  = errors.New("instance is shutting down")
	ErrUnreachable   = errors.New("LiveKit cannot be reached")
	ErrUnavailable   = errors.New("the fleet's shared state is unavailable")
	// ErrElsewhere: the room's bot joins on another instance; place the
	// start again.
	ErrElsewhere = errors.New("the room is recorded on another instance")
)

// wireCode is how one kind of error crosses the bus. reason is the wire
// name in the error's details: never rename one, instances of two versions
// may share a bus.
type wireCode struct {
	err    error
	code   psrpc.ErrorCode
	reason string
}

// wireCodes is read-only; the first match wins.
var wireCodes = [...]wireCode{
	{ErrNotFound, psrpc.NotFound, "not_found"},
	{ErrNoRoom, psrpc.NotFound, "no_room"},
	{ErrNoParticipant, psrpc.NotFound, "no_participant"},
	{ErrOwned, psrpc.AlreadyExists, "owned"},
	{ErrFull, psrpc.ResourceExhausted, "full"},
	{ErrShuttingDown, psrpc.Unavailable, "shutting_down"},
	{ErrUnavailable, psrpc.Unavailable, "unavailable"},
	{ErrElsewhere, psrpc.Aborted, "elsewhere"},
	{ErrUnreachable, psrpc.UpstreamServerError, "unreachable"},
	{context.DeadlineExceeded, psrpc.DeadlineExceeded, "deadline"},
	{context.Canceled, psrpc.Canceled, "canceled"},
}

// toWire turns a Local's error into the psrpc error the server sends: its
// code, its message, and a detail naming the reason and this instance.
func toWire(err error, instance string) error {
	code, reason := psrpc.Unknown, ""
	for _, w := range wireCodes {
		if errors.Is(err, w.err) {
			code, reason = w.code, w.reason
			break
		}
	}
	detail, derr := structpb.NewStruct(map[string]any{"reason": reason, "instance": instance})
	if derr != nil { // only for invalid UTF-8 in the instance name, which New refuses
		return psrpc.NewError(code, err)
	}
	return psrpc.NewError(code, err, detail)
}

// remoteError is an error an instance's Local returned, as its caller sees
// it: errors.Is the sentinel (when it had one) and the psrpc code.
type remoteError struct {
	instance string
	kind     error // a sentinel of wireCodes, or nil
	wire     psrpc.Error
}

func (e *remoteError) Error() string { return e.wire.Error() }

func (e *remoteError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.wire}
	}
	return []error{e.kind, e.wire}
}

// fromWire rebuilds an error a server sent with toWire. ok is false for
// psrpc's own errors (no claim, timeout, closed), which have no such detail.
func fromWire(err error) (rerr *remoteError, ok bool) {
	var pe psrpc.Error
	if !errors.As(err, &pe) {
		return nil, false
	}
	for _, a := range pe.DetailsProto() {
		var s structpb.Struct
		if !a.MessageIs(&s) || a.UnmarshalTo(&s) != nil {
			continue
		}
		f := s.GetFields()
		inst, hasInst := f["instance"]
		reason, hasReason := f["reason"]
		if !hasInst || !hasReason {
			continue
		}
		e := &remoteError{instance: inst.GetStringValue(), wire: pe}
		for _, w := range wireCodes {
			if w.reason != "" && w.reason == reason.GetStringValue() {
				e.kind = w.err
				break
			}
		}
		return e, true
	}
	return nil, false
}

// UnansweredError names the known instances that did not answer a List
// within the timeout; List returns it with the entries of the others.
type UnansweredError struct {
	Instances []string // sorted
	Timeout   time.Duration
}

func (e *UnansweredError) Error() string {
	return fmt.Sprintf("fleet: %d instance(s) did not answer within %s: %s",
		len(e.Instances), e.Timeout, strings.Join(e.Instances, ", "))
}

// callError maps a failed request to what Start, Stop and Owner return:
// the remote Local's error as it was, or nobody when no instance claimed.
func callError(ctx context.Context, op string, err error, timeout time.Duration, nobody error) (string, error) {
	if re, ok := fromWire(err); ok {
		return re.instance, re
	}
	switch {
	case ctx.Err() != nil: // psrpc reports a cancelled selection as no response
		return "", fmt.Errorf("fleet: %s: %w", op, context.Cause(ctx))
	case errors.Is(err, psrpc.ErrNoResponse):
		return "", nobody
	case errors.Is(err, psrpc.ErrRequestTimedOut):
		return "", fmt.Errorf("fleet: %s: the instance did not answer within %s: %w (%w)", op, timeout, context.DeadlineExceeded, err)
	case errors.Is(err, psrpc.ErrRequestCanceled):
		return "", fmt.Errorf("fleet: %s: %w (%w)", op, context.Canceled, err)
	}
	return "", fmt.Errorf("fleet: %s: %w", op, err)
}
