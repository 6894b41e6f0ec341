package recorder

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
)

// splitQueue bounds what one reader of a split may fall behind: about
// five seconds of 20 ms packets. A reader that falls further loses packets
// (its jitter buffer sees them lost); the other is never held up.
const splitQueue = 256

// split feeds one subscription to two recordings: a track's own (a track
// egress) and its participant's. One goroutine reads the subscription;
// each reader has its own queue and its own deadline, as a subscription
// has.
type split struct {
	src     bot.RTPReader
	readers []*splitReader
}

// newSplit splits src for n readers; run starts reading.
func newSplit(src bot.RTPReader, n int) *split {
	s := &split{src: src}
	for range n {
		s.readers = append(s.readers, &splitReader{ch: make(chan *rtp.Packet, splitQueue), dl: make(chan struct{}), ended: make(chan struct{})})
	}
	return s
}

// run reads src until it ends (the subscription went) or every reader is
// past its deadline, and hands each packet to every reader still reading.
// The packets are shared: neither reader changes them.
func (s *split) run() {
	defer func() {
		for _, r := range s.readers {
			close(r.ended)
		}
	}()
	for {
		p, _, err := s.src.ReadRTP()
		if err != nil {
			return
		}
		open := 0
		for _, r := range s.readers {
			select {
			case <-r.dl:
				continue
			default:
			}
			open++
			select {
			case r.ch <- p:
			default: // that reader is behind: it loses this packet
			}
		}
		if open == 0 {
			return
		}
	}
}

// splitReader is one reader of a split: a bot.RTPReader.
type splitReader struct {
	ch    chan *rtp.Packet
	ended chan struct{} // the subscription went
	once  sync.Once
	dl    chan struct{} // closed at the deadline
}

// ReadRTP returns the next packet; io.EOF once the subscription went and
// the queue is empty, os.ErrDeadlineExceeded past the deadline (like pion,
// even with packets queued).
func (r *splitReader) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	select {
	case <-r.dl:
		return nil, nil, os.ErrDeadlineExceeded
	default:
	}
	select {
	case p := <-r.ch:
		return p, nil, nil
	case <-r.dl:
		return nil, nil, os.ErrDeadlineExceeded
	case <-r.ended:
		select {
		case p := <-r.ch:
			return p, nil, nil
		default:
			return nil, nil, io.EOF
		}
	}
}

// SetReadDeadline ends the reader at at; only the first deadline counts
// (a recording sets one, when it ends).
func (r *splitReader) SetReadDeadline(at time.Time) error {
	r.once.Do(func() { time.AfterFunc(time.Until(at), func() { close(r.dl) }) })
	return nil
}
