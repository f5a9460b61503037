package services

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"

	"github.com/pion/rtp"
)

// echo sends each received packet of the call's codec back to where it
// came from, with this side's own RTP headers, delayed by delay samples
// (0: at once). The delay line is a ring of G.711 bytes (one byte a
// sample) filled with silence: the echo of sample n leaves as sample
// n+delay of the outgoing stream, whatever the wall clock says.
func (c *call) echo(ctx context.Context, delay int) error {
	stop := context.AfterFunc(ctx, func() { c.media.Close() })
	defer stop()
	var ring []byte
	pos := 0
	if delay > 0 {
		ring = make([]byte, delay)
		s := c.law.Silence()
		for i := range ring {
			ring[i] = s
		}
	}
	ssrc := rand.Uint32()
	seq := uint16(rand.Uint32())
	ts := rand.Uint32()
	marker := true
	buf := make([]byte, 1500)
	for {
		n, from, err := c.media.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if n >= 2 && buf[1] >= 192 && buf[1] <= 223 {
			continue // RTCP (RFC 5761 §4)
		}
		var in rtp.Packet
		if in.Unmarshal(buf[:n]) != nil || in.PayloadType != c.pt || len(in.Payload) == 0 {
			continue
		}
		payload := in.Payload
		if ring != nil {
			for i, b := range payload {
				payload[i], ring[pos] = ring[pos], b
				pos++
				if pos == len(ring) {
					pos = 0
				}
			}
		}
		h := rtp.Header{Version: 2, Marker: marker, PayloadType: c.pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}
		marker = false
		seq++
		ts += uint32(len(payload))
		b, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		if err != nil {
			continue
		}
		c.media.WriteTo(b, from)
	}
}
