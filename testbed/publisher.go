package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

const (
	// How long a (re)publish may take: the SDK's own publish timeout is 10 s,
	// plus the negotiation that binds the track.
	publishTimeout = 15 * time.Second
	// Mute and unmute keep this much time between the signal and the
	// nearest packet: when a packet and the signal arrive together the SFU
	// sometimes drops the packet, and Sent() would no longer match what
	// subscribers get.
	signalGap = 20 * time.Millisecond
	// Pacing step while muted or waiting for the track to be bound.
	idleStep = 20 * time.Millisecond
)

// SentPacket is one Opus payload handed to the SDK, which puts it unchanged
// into one RTP packet.
type SentPacket struct {
	TrackSID string
	Payload  []byte
	At       time.Time // wall clock when handed to the track
	// RTPTime is the capture time the SDK turns into the RTP timestamp: the
	// packet's slot on the pacing grid (At lags it by scheduling delay).
	RTPTime time.Time
}

// PublisherOptions configures Publish.
type PublisherOptions struct {
	URL, APIKey, APISecret string
	Room, Identity         string
	// File is an Ogg Opus file; each Ogg packet becomes one RTP payload.
	File string
	// Loop restarts the file when it ends.
	Loop bool
	// Source of the first track; default MICROPHONE.
	Source livekit.TrackSource
	// Unlogged keeps Sent empty: a crowd that publishes for long does not
	// hold every packet it sent.
	Unlogged bool
}

// Publisher is a scripted participant publishing Opus audio from a file in
// real time, with exact knowledge of every payload it sent.
type Publisher struct {
	room *lksdk.Room
	file *OpusFile
	durs []time.Duration // duration of each file packet
	loop bool
	// unlogged: sent stays empty (PublisherOptions.Unlogged).
	unlogged bool

	// life ends the pacing loops on Leave; Publish's ctx only bounds setup.
	life     context.Context
	stopLife context.CancelFunc

	mu   sync.Mutex
	sent []SentPacket
	all  []*Track // every track ever published, for Leave

	main      *Track
	done      chan struct{} // closed when main reaches the end of the file
	doneOnce  sync.Once
	leaveOnce sync.Once
}

// Track is one published audio track of a Publisher. Its position in the file
// survives mute and republish.
type Track struct {
	p      *Publisher
	source livekit.TrackSource
	isMain bool

	mu       sync.Mutex // guards the fields below; held while handing a packet to the SDK
	local    *lksdk.LocalTrack
	pub      *lksdk.LocalTrackPublication
	sid      string
	muted    bool
	resumeAt time.Time // no packet before this, after unmute
	lastSent time.Time // when the last packet was handed to the SDK
	pos      int       // next file packet
	cancel   context.CancelFunc
	loopDone chan struct{}
}

// Publish connects to the room as o.Identity and publishes one audio track
// that sends o.File paced in real time. It returns once the track is
// published and bound, so packets are flowing. ctx bounds connecting and
// publishing; the publisher runs until Leave.
func Publish(ctx context.Context, o PublisherOptions) (*Publisher, error) {
	file, err := ReadOpusFile(o.File)
	if err != nil {
		return nil, err
	}
	if len(file.Packets) == 0 {
		return nil, fmt.Errorf("publish %s: no audio packets", o.File)
	}
	durs := make([]time.Duration, len(file.Packets))
	for i, pkt := range file.Packets {
		if durs[i], err = OpusPacketDuration(pkt); err != nil {
			return nil, fmt.Errorf("publish %s: packet %d: %w", o.File, i, err)
		}
	}
	if o.Source == livekit.TrackSource_UNKNOWN {
		o.Source = livekit.TrackSource_MICROPHONE
	}

	room, err := connect(ctx, o)
	if err != nil {
		return nil, err
	}
	life, stop := context.WithCancel(context.Background())
	p := &Publisher{
		room:     room,
		file:     file,
		durs:     durs,
		loop:     o.Loop,
		unlogged: o.Unlogged,
		life:     life,
		stopLife: stop,
		done:     make(chan struct{}),
	}
	p.main = &Track{p: p, source: o.Source, isMain: true}
	if err := p.main.publish(ctx); err != nil {
		_ = p.Leave()
		return nil, err
	}
	return p, nil
}

// connect joins the room, abandoning the attempt (and disconnecting whatever
// it yields later) when ctx ends first, since the SDK takes no context.
func connect(ctx context.Context, o PublisherOptions) (*lksdk.Room, error) {
	type result struct {
		room *lksdk.Room
		err  error
	}
	ch := make(chan result, 1)
	cb := lksdk.NewRoomCallback()
	cb.OnDisconnectedWithReason = func(reason lksdk.DisconnectionReason) {
		slog.Info("publisher disconnected", "identity", o.Identity, "reason", reason)
	}
	go func() {
		room, err := lksdk.ConnectToRoom(o.URL, lksdk.ConnectInfo{
			APIKey:              o.APIKey,
			APISecret:           o.APISecret,
			RoomName:            o.Room,
			ParticipantIdentity: o.Identity,
		}, cb, lksdk.WithAutoSubscribe(false))
		ch <- result{room, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("publisher %s: connect to %s room %s: %w", o.Identity, o.URL, o.Room, r.err)
		}
		return r.room, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.room != nil {
				r.room.Disconnect()
			}
		}()
		return nil, fmt.Errorf("publisher %s: connect: %w", o.Identity, ctx.Err())
	}
}

// Track returns the first track.
func (p *Publisher) Track() *Track { return p.main }

// TrackSID returns the SID of the first track's current publication, "" while
// unpublished.
func (p *Publisher) TrackSID() string { return p.main.SID() }

// Mute stops the first track's packets, then signals mute.
func (p *Publisher) Mute() error { return p.main.Mute() }

// Unmute signals unmute, then resumes the file where it stopped.
func (p *Publisher) Unmute() error { return p.main.Unmute() }

// Unpublish stops and unpublishes the first track.
func (p *Publisher) Unpublish() error { return p.main.Unpublish() }

// Republish publishes the first track again, under a new SID, continuing the file.
func (p *Publisher) Republish() error { return p.main.Republish() }

// PublishSecond publishes another audio track from the start of the same
// file, e.g. SCREEN_SHARE_AUDIO beside the microphone.
func (p *Publisher) PublishSecond(ctx context.Context, source livekit.TrackSource) (*Track, error) {
	t := &Track{p: p, source: source}
	if err := t.publish(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

// Done is closed when the first track has sent the whole file (never with Loop).
func (p *Publisher) Done() <-chan struct{} { return p.done }

// Sent returns every payload handed to the SDK so far, in order, across
// tracks. Payloads share memory with the publisher: do not modify them.
func (p *Publisher) Sent() []SentPacket {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]SentPacket(nil), p.sent...)
}

// Leave stops sending and disconnects. It is safe to call more than once.
func (p *Publisher) Leave() error {
	p.leaveOnce.Do(func() {
		p.stopLife()
		// Wait for the loops so nothing is written after Leave returns.
		for _, t := range p.tracks() {
			t.mu.Lock()
			done := t.loopDone
			t.mu.Unlock()
			if done != nil {
				<-done
			}
		}
		p.room.Disconnect()
	})
	return nil
}

func (p *Publisher) tracks() []*Track {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Track(nil), p.all...)
}

func (p *Publisher) addTrack(t *Track) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, have := range p.all {
		if have == t {
			return
		}
	}
	p.all = append(p.all, t)
}

// SID returns the track's current publication SID, "" while unpublished.
func (t *Track) SID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sid
}

// Source returns the track's source.
func (t *Track) Source() livekit.TrackSource { return t.source }

// Mute stops the packets, then signals mute, so no packet follows the signal
// and the last one reaches the SFU before it.
func (t *Track) Mute() error {
	t.mu.Lock()
	pub := t.pub
	if pub == nil {
		t.mu.Unlock()
		return errors.New("mute: track not published")
	}
	if t.muted {
		t.mu.Unlock()
		return nil
	}
	t.muted = true // the loop writes under t.mu, so no packet goes after this
	last := t.lastSent
	t.mu.Unlock()
	time.Sleep(time.Until(last.Add(signalGap)))
	pub.SetMuted(true)
	slog.Debug("publisher muted", "track", pub.SID())
	return nil
}

// Unmute signals unmute, then resumes the file one frame later.
func (t *Track) Unmute() error {
	t.mu.Lock()
	pub := t.pub
	muted := t.muted
	t.mu.Unlock()
	if pub == nil {
		return errors.New("unmute: track not published")
	}
	if !muted {
		return nil
	}
	pub.SetMuted(false)
	t.mu.Lock()
	t.muted = false
	t.resumeAt = time.Now().Add(signalGap)
	t.mu.Unlock()
	slog.Debug("publisher unmuted", "track", pub.SID())
	return nil
}

// Unpublish stops the packets and unpublishes the track.
func (t *Track) Unpublish() error {
	t.mu.Lock()
	sid, cancel, done := t.sid, t.cancel, t.loopDone
	if t.pub == nil {
		t.mu.Unlock()
		return errors.New("unpublish: track not published")
	}
	t.pub, t.local, t.sid, t.cancel = nil, nil, "", nil
	t.mu.Unlock()
	cancel()
	<-done
	if err := t.p.room.LocalParticipant.UnpublishTrack(sid); err != nil {
		return fmt.Errorf("unpublish %s: %w", sid, err)
	}
	slog.Debug("publisher unpublished", "track", sid)
	return nil
}

// Republish publishes a new track, with a new SID, continuing the file.
func (t *Track) Republish() error {
	t.mu.Lock()
	published := t.pub != nil
	t.mu.Unlock()
	if published {
		return errors.New("republish: track still published")
	}
	return t.publish(t.p.life)
}

// publish creates a local track, publishes it, waits until pion has bound
// it to the transceiver (before that WriteSample silently drops samples),
// then starts the pacing loop.
func (t *Track) publish(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	local, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{
		MimeType:  webrtc.MimeTypeOpus,
		ClockRate: 48000,
		Channels:  2, // Opus is always signalled as 2 channels in SDP
	})
	if err != nil {
		return fmt.Errorf("publish %s: new track: %w", t.source, err)
	}
	bound := make(chan struct{})
	var once sync.Once
	local.OnBind(func() { once.Do(func() { close(bound) }) })

	type result struct {
		pub *lksdk.LocalTrackPublication
		err error
	}
	ch := make(chan result, 1)
	go func() {
		pub, err := t.p.room.LocalParticipant.PublishTrack(local, &lksdk.TrackPublicationOptions{
			Name:   strings.ToLower(t.source.String()),
			Source: t.source,
		})
		ch <- result{pub, err}
	}()
	var pub *lksdk.LocalTrackPublication
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("publish %s: %w", t.source, r.err)
		}
		pub = r.pub
	case <-ctx.Done():
		// Do not leave a late publication behind.
		go func() {
			if r := <-ch; r.err == nil {
				_ = t.p.room.LocalParticipant.UnpublishTrack(r.pub.SID())
			}
		}()
		return fmt.Errorf("publish %s: %w", t.source, ctx.Err())
	}
	if !local.IsBound() {
		select {
		case <-bound:
		case <-ctx.Done():
			_ = t.p.room.LocalParticipant.UnpublishTrack(pub.SID())
			return fmt.Errorf("publish %s: waiting for the track to be bound: %w", t.source, ctx.Err())
		}
	}

	loopCtx, stopLoop := context.WithCancel(t.p.life)
	done := make(chan struct{})
	t.mu.Lock()
	t.local, t.pub, t.sid = local, pub, pub.SID()
	t.muted, t.resumeAt = false, time.Time{}
	t.cancel, t.loopDone = stopLoop, done
	t.mu.Unlock()
	t.p.addTrack(t)
	slog.Debug("publisher published", "track", pub.SID(), "source", t.source, "pos", t.pos)
	go t.run(loopCtx, local, pub.SID(), done)
	return nil
}

// run hands one packet to the SDK per frame. Slots are anchored to the start
// time (start + sum of durations), so scheduling jitter never accumulates.
// While muted the grid keeps going without consuming the file, and the SDK
// derives RTP timestamps from the slot times, so they advance across a mute
// gap as a live source's would.
func (t *Track) run(ctx context.Context, local *lksdk.LocalTrack, sid string, done chan struct{}) {
	defer close(done)
	p := t.p
	slot := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		step, ended := t.sendSlot(local, sid, slot)
		if ended {
			if t.isMain {
				p.doneOnce.Do(func() { close(p.done) })
			}
			slog.Debug("publisher reached end of file", "track", sid)
			return
		}
		slot = slot.Add(step)
		timer.Reset(time.Until(slot))
	}
}

// sendSlot sends the next file packet unless muted, returning how far the
// grid advances and whether the file has ended.
func (t *Track) sendSlot(local *lksdk.LocalTrack, sid string, slot time.Time) (time.Duration, bool) {
	p := t.p
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.local != local || t.muted || slot.Before(t.resumeAt) || !local.IsBound() {
		return idleStep, false
	}
	if t.pos >= len(p.file.Packets) {
		if !p.loop {
			return 0, true
		}
		t.pos = 0
	}
	pkt, dur := p.file.Packets[t.pos], p.durs[t.pos]
	t.pos++
	at := time.Now()
	// Recorded even if the write fails: Sent() lists what was handed over.
	if err := local.WriteSample(media.Sample{Data: pkt, Duration: dur, Timestamp: slot}, nil); err != nil {
		slog.Warn("publisher: write sample", "track", sid, "err", err)
	}
	t.lastSent = at
	if !p.unlogged {
		p.mu.Lock()
		p.sent = append(p.sent, SentPacket{TrackSID: sid, Payload: pkt, At: at, RTPTime: slot})
		p.mu.Unlock()
	}
	return dur, false
}

// PublishVideo publishes a VP8 camera track that sends nothing: enough for
// the server to list it and offer its track egress. It returns its SID.
func (p *Publisher) PublishVideo(ctx context.Context) (string, error) {
	local, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000})
	if err != nil {
		return "", fmt.Errorf("publish video: new track: %w", err)
	}
	type result struct {
		pub *lksdk.LocalTrackPublication
		err error
	}
	ch := make(chan result, 1)
	go func() {
		pub, err := p.room.LocalParticipant.PublishTrack(local, &lksdk.TrackPublicationOptions{
			Name: "camera", Source: livekit.TrackSource_CAMERA, VideoWidth: 640, VideoHeight: 480,
		})
		ch <- result{pub, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("publish video: %w", r.err)
		}
		// The server takes the track as published once media comes: a
		// VP8 key frame header, padded, ten times a second until Leave.
		go func() {
			frame := append([]byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}, make([]byte, 200)...)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-p.life.Done():
					return
				case <-tick.C:
					_ = local.WriteSample(media.Sample{Data: frame, Duration: 100 * time.Millisecond}, nil)
				}
			}
		}()
		return r.pub.SID(), nil
	case <-ctx.Done():
		return "", fmt.Errorf("publish video: %w", ctx.Err())
	}
}
