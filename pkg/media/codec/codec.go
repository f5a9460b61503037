// Package codec describes the audio codecs natkit speaks over RTP — G.711
// (PCMU, PCMA), G.722 and L16 at 8, 16, 32 and 48 kHz — and makes their
// per-stream encoders and decoders: one description per codec, with the
// RTP clock rate apart from the audio sample rate (they differ for G.722,
// RFC 3551 §4.5.2).
package codec

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/natkit/natkit/pkg/media/g711"
	"github.com/natkit/natkit/pkg/media/g722"
)

// Codec describes one payload format.
type Codec struct {
	// Name is the RTP encoding name of a=rtpmap ("PCMU", "G722", "L16");
	// names compare case-insensitively.
	Name string
	// PT is the static payload type (RFC 3551 §6), or for a dynamic one
	// the number natkit offers; an answer keeps the offerer's number.
	PT      uint8
	Dynamic bool
	// ClockRate is the RTP timestamp rate, as in a=rtpmap. For G.722 it is
	// 8000 although the audio is sampled at 16 kHz (RFC 3551 §4.5.2).
	ClockRate int
	// SampleRate is the rate of the audio an Encoder takes and a Decoder
	// gives (mono, 16-bit).
	SampleRate int
	// Channels on the wire: 1, or 2 for stereo L16 (decoded by downmix,
	// encoded as the same signal on both channels).
	Channels int
}

// Encoder encodes one stream's mono samples at the codec's sample rate
// into payload bytes, appending to dst. It may keep state (G.722 does):
// one per stream, frames in order.
type Encoder interface {
	Encode(dst []byte, pcm []int16) []byte
}

// Decoder decodes one stream's payloads to mono samples at the codec's
// sample rate, appending to dst; one per stream.
type Decoder interface {
	Decode(dst []int16, payload []byte) []int16
}

// The codecs. The L16 payload types are natkit's dynamic numbers (RFC 3551
// §6 gives L16 static numbers only at 44.1 kHz, 10 and 11); telephone-event
// is 101 beside them.
var (
	PCMU = Codec{Name: "PCMU", PT: 0, ClockRate: 8000, SampleRate: 8000, Channels: 1}
	PCMA = Codec{Name: "PCMA", PT: 8, ClockRate: 8000, SampleRate: 8000, Channels: 1}
	// G722's RTP clock is 8000, its audio 16 kHz: timestamps advance 160
	// per 20 ms packet of 320 samples (RFC 3551 §4.5.2).
	G722      = Codec{Name: "G722", PT: g722.PayloadType, ClockRate: g722.RTPClockRate, SampleRate: g722.SampleRate, Channels: 1}
	L16_8000  = l16(99, 8000)
	L16_16000 = l16(96, 16000)
	L16_32000 = l16(97, 32000)
	L16_48000 = l16(98, 48000)
)

func l16(pt uint8, rate int) Codec {
	return Codec{Name: "L16", PT: pt, Dynamic: true, ClockRate: rate, SampleRate: rate, Channels: 1}
}

// All lists every codec natkit encodes, best first: natkit's own
// preference (wideband before narrowband, G.722 first of those because
// every SIP phone that is wideband has it and it takes 64 kbit/s where
// L16/16000 takes 256).
var All = []Codec{G722, L16_16000, L16_32000, L16_48000, PCMU, PCMA, L16_8000}

// String is the rtpmap form: "G722/8000", "L16/48000/2".
func (c Codec) String() string {
	s := c.Name + "/" + strconv.Itoa(c.ClockRate)
	if c.Channels > 1 {
		s += "/" + strconv.Itoa(c.Channels)
	}
	return s
}

// Same reports whether c and o are the same encoding (name, clock rate and
// channels), whatever their payload types.
func (c Codec) Same(o Codec) bool {
	return strings.EqualFold(c.Name, o.Name) && c.ClockRate == o.ClockRate && max(c.Channels, 1) == max(o.Channels, 1)
}

// Lookup finds the codec an rtpmap names (channels 0 is 1); ok is false
// for an encoding natkit does not speak. The payload type is the
// description's default: set the negotiated one.
func Lookup(name string, clockRate, channels int) (Codec, bool) {
	channels = max(channels, 1)
	for _, c := range All {
		if strings.EqualFold(c.Name, name) && c.ClockRate == clockRate {
			if channels == 1 {
				return c, true
			}
			if c.Name == "L16" && channels == 2 {
				c.Channels = 2
				return c, true
			}
		}
	}
	return Codec{}, false
}

// Samples is how many samples (at SampleRate) ptime holds.
func (c Codec) Samples(ptime time.Duration) int {
	return int(ptime * time.Duration(c.SampleRate) / time.Second)
}

// Ticks is how far the RTP timestamp moves for n samples at SampleRate.
func (c Codec) Ticks(n int) uint32 {
	return uint32(int64(n) * int64(c.ClockRate) / int64(c.SampleRate))
}

// NewEncoder returns a fresh encoder for one stream; nil for a zero or
// unknown Codec.
func (c Codec) NewEncoder() Encoder {
	switch strings.ToUpper(c.Name) {
	case "PCMU":
		return g711.ULaw
	case "PCMA":
		return g711.ALaw
	case "G722":
		return newG722Encoder()
	case "L16":
		return l16Codec{channels: max(c.Channels, 1)}
	}
	return nil
}

// NewDecoder returns a fresh decoder for one stream; nil for a zero or
// unknown Codec.
func (c Codec) NewDecoder() Decoder {
	switch strings.ToUpper(c.Name) {
	case "PCMU":
		return g711.ULaw
	case "PCMA":
		return g711.ALaw
	case "G722":
		return newG722Decoder()
	case "L16":
		return l16Codec{channels: max(c.Channels, 1)}
	}
	return nil
}

// l16Codec is RFC 3551 §4.5.11 L16: 16-bit signed samples in network
// byte order (big-endian), channels interleaved.
type l16Codec struct{ channels int }

func (l l16Codec) Encode(dst []byte, pcm []int16) []byte {
	for _, v := range pcm {
		for range l.channels {
			dst = binary.BigEndian.AppendUint16(dst, uint16(v))
		}
	}
	return dst
}

// Decode downmixes stereo to mono (the mean of the channels); a trailing
// partial sample is dropped.
func (l l16Codec) Decode(dst []int16, payload []byte) []int16 {
	step := 2 * l.channels
	for i := 0; i+step <= len(payload); i += step {
		var sum int32
		for ch := range l.channels {
			sum += int32(int16(binary.BigEndian.Uint16(payload[i+2*ch:])))
		}
		dst = append(dst, int16(sum/int32(l.channels)))
	}
	return dst
}

// Parse reads a codec as natkit call's --codec names it: pcmu, pcma, g722,
// l16 (L16 at 16 kHz, the wideband rate phones share with G.722),
// l16/16000, l16/32000, l16/48000, l16/8000.
func Parse(s string) (Codec, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "pcmu":
		return PCMU, nil
	case "pcma":
		return PCMA, nil
	case "g722":
		return G722, nil
	case "l16", "l16/16000":
		return L16_16000, nil
	case "l16/8000":
		return L16_8000, nil
	case "l16/32000":
		return L16_32000, nil
	case "l16/48000":
		return L16_48000, nil
	}
	return Codec{}, fmt.Errorf("unknown codec %q (want %s)", s, strings.Join(Names, ", "))
}

// Names are the names Parse takes, for flag help and shell completion.
var Names = []string{"pcmu", "pcma", "g722", "l16", "l16/8000", "l16/16000", "l16/32000", "l16/48000"}
