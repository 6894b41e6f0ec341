package testbed

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// OpusFile is the content of an Ogg Opus file: its header packets and its
// audio packets, each packet exactly as it would travel in one RTP payload.
type OpusFile struct {
	Head    []byte   // OpusHead packet
	Tags    []byte   // OpusTags packet
	Packets [][]byte // audio packets in order
}

// ReadOpusFile reads every packet of a single-stream Ogg Opus file.
// (pion's oggreader returns whole pages, which hold many packets.)
func ReadOpusFile(path string) (*OpusFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read opus file: %w", err)
	}
	defer f.Close()
	of, err := ParseOpusFile(f)
	if err != nil {
		return nil, fmt.Errorf("read opus file %s: %w", path, err)
	}
	return of, nil
}

// ParseOpusFile reads every packet of a single-stream Ogg Opus stream,
// checking page CRCs and joining packets that continue across pages.
func ParseOpusFile(r io.Reader) (*OpusFile, error) {
	br := bufio.NewReader(r)
	var (
		packets [][]byte
		partial []byte // packet continued on the next page
		serial  uint32
		pageNo  int
	)
	for {
		hdr := make([]byte, 27)
		if _, err := io.ReadFull(br, hdr); err != nil {
			if errors.Is(err, io.EOF) && pageNo > 0 {
				break
			}
			return nil, fmt.Errorf("page %d header: %w", pageNo, err)
		}
		if string(hdr[:4]) != "OggS" || hdr[4] != 0 {
			return nil, fmt.Errorf("page %d: not an Ogg page", pageNo)
		}
		s := binary.LittleEndian.Uint32(hdr[14:18])
		if pageNo == 0 {
			serial = s
		} else if s != serial {
			return nil, fmt.Errorf("page %d: second logical stream %d (only one supported)", pageNo, s)
		}
		lacing := make([]byte, hdr[26])
		if _, err := io.ReadFull(br, lacing); err != nil {
			return nil, fmt.Errorf("page %d lacing: %w", pageNo, err)
		}
		size := 0
		for _, l := range lacing {
			size += int(l)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, fmt.Errorf("page %d body: %w", pageNo, err)
		}
		want := binary.LittleEndian.Uint32(hdr[22:26])
		binary.LittleEndian.PutUint32(hdr[22:26], 0)
		if got := oggCRC(oggCRC(oggCRC(0, hdr), lacing), body); got != want {
			return nil, fmt.Errorf("page %d: CRC mismatch", pageNo)
		}
		continued := hdr[5]&0x01 != 0
		if continued != (partial != nil) {
			return nil, fmt.Errorf("page %d: continuation flag does not match previous page", pageNo)
		}
		off := 0
		for _, l := range lacing {
			partial = append(partial, body[off:off+int(l)]...)
			off += int(l)
			if l < 255 { // a 255-byte segment means the packet goes on
				packets = append(packets, partial)
				partial = nil
			}
		}
		pageNo++
	}
	if partial != nil {
		return nil, errors.New("stream ends inside a packet")
	}
	if len(packets) < 2 || !bytes.HasPrefix(packets[0], []byte("OpusHead")) || !bytes.HasPrefix(packets[1], []byte("OpusTags")) {
		return nil, errors.New("not an Ogg Opus stream (missing OpusHead/OpusTags)")
	}
	return &OpusFile{Head: packets[0], Tags: packets[1], Packets: packets[2:]}, nil
}

// oggCRC is the Ogg page checksum: CRC-32, polynomial 0x04c11db7, not
// reflected, initial value 0.
func oggCRC(crc uint32, p []byte) uint32 {
	for _, b := range p {
		crc ^= uint32(b) << 24
		for i := 0; i < 8; i++ {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// OpusPacketDuration returns the audio duration of one Opus packet from its
// TOC byte (RFC 6716 section 3.1).
func OpusPacketDuration(pkt []byte) (time.Duration, error) {
	if len(pkt) == 0 {
		return 0, errors.New("empty opus packet")
	}
	toc := pkt[0]
	config := toc >> 3
	var frame time.Duration
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]time.Duration{10, 20, 40, 60}[config%4] * time.Millisecond
	case config < 16: // Hybrid: 10, 20 ms
		frame = [2]time.Duration{10, 20}[config%2] * time.Millisecond
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]time.Duration{2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond}[config%4]
	}
	var frames int
	switch toc & 3 {
	case 0:
		frames = 1
	case 1, 2:
		frames = 2
	case 3:
		if len(pkt) < 2 {
			return 0, errors.New("opus code 3 packet without frame count")
		}
		frames = int(pkt[1] & 0x3f)
	}
	d := time.Duration(frames) * frame
	if d == 0 || d > 120*time.Millisecond {
		return 0, fmt.Errorf("invalid opus packet duration %v", d)
	}
	return d, nil
}
