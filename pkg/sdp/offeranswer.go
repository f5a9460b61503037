package sdp

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/natkit/natkit/pkg/media/codec"
	psdp "github.com/pion/sdp/v3"
)

// The G.711 codecs (RFC 3551 static payload types) and RFC 4733
// telephone-event, which natkit's PBX offers and accepts.
var (
	PCMU           = Codec{PT: 0, Name: "PCMU", ClockRate: 8000}
	PCMA           = Codec{PT: 8, Name: "PCMA", ClockRate: 8000}
	TelephoneEvent = Codec{PT: 101, Name: "telephone-event", ClockRate: 8000, Fmtp: "0-16"}
)

// FromCodec is the payload format of a codec of package codec, with its
// default payload type.
func FromCodec(c codec.Codec) Codec {
	out := Codec{PT: c.PT, Name: c.Name, ClockRate: c.ClockRate}
	if c.Channels > 1 {
		out.Channels = c.Channels
	}
	return out
}

// Media is the codec of package codec that a negotiated payload format
// names, with the negotiated payload type; ok is false for one natkit
// does not speak.
func Media(c Codec) (codec.Codec, bool) {
	m, ok := codec.Lookup(c.Name, c.ClockRate, c.Channels)
	m.PT = c.PT
	return m, ok
}

// EventFor picks, among offered formats, the telephone-event that goes
// with audio: the one at audio's clock rate (RFC 4733 §2.1: the event
// clock is the audio's), else the one at 8000 (a peer that offers
// telephone-event/8000 only beside a wideband codec), else the first
// offered; nil when none.
func EventFor(offered []Codec, audio Codec) *Codec {
	var first, narrow *Codec
	for _, c := range offered {
		if !strings.EqualFold(c.Name, TelephoneEvent.Name) {
			continue
		}
		c := c
		if c.Fmtp == "" {
			c.Fmtp = TelephoneEvent.Fmtp
		}
		if c.ClockRate == audio.ClockRate {
			return &c
		}
		if c.ClockRate == 8000 && narrow == nil {
			narrow = &c
		}
		if first == nil {
			first = &c
		}
	}
	if narrow != nil {
		return narrow
	}
	return first
}

// events is the telephone-events an offer of codecs carries: one per
// distinct clock rate (RFC 4733 §2.1), the first at payload type 101, the
// next at numbers no codec takes.
func events(codecs []Codec) []Codec {
	used := map[uint8]bool{}
	for _, c := range codecs {
		used[c.PT] = true
	}
	var out []Codec
	seen := map[int]bool{}
	next := TelephoneEvent.PT
	for _, c := range codecs {
		if seen[c.ClockRate] {
			continue
		}
		seen[c.ClockRate] = true
		for used[next] && next < 127 {
			next++
		}
		ev := TelephoneEvent
		ev.PT, ev.ClockRate = next, c.ClockRate
		used[next] = true
		out = append(out, ev)
	}
	return out
}

// DefaultPtime is the packet time natkit offers: 20 ms, 160 G.711 samples.
const DefaultPtime = 20

// ErrNotAcceptable is returned by Answer when no audio stream of the offer
// has a codec in common with ours (SIP answers 488).
var ErrNotAcceptable = errors.New("sdp: no audio stream with a common codec")

// Local is our side of an offer/answer. Zero values mean the defaults.
type Local struct {
	Addr           netip.AddrPort // where we receive RTP
	Username       string         // o= username; "" is "-"
	SessionID      uint64         // o= sess-id
	SessionVersion uint64         // o= sess-version
	Codecs         []Codec        // in our order of preference; nil is PCMU, PCMA
	NoDTMF         bool           // neither offer nor accept telephone-event
	Ptime          int            // ms; 0 is DefaultPtime
	Direction      Direction      // offers only; "" is sendrecv
	// RTCPMux says RTCP is received on the RTP port (one socket, RFC 5761
	// demultiplexing): the audio section names that port in a=rtcp (RFC
	// 3605), so that peers which do not multiplex send their RTCP there
	// too, not to the RTP port + 1; offers add a=rtcp-mux, answers only
	// when the offer has it.
	RTCPMux bool
}

func (l Local) codecs() []Codec {
	if l.Codecs == nil {
		return []Codec{PCMU, PCMA}
	}
	return l.Codecs
}

func (l Local) session() *psdp.SessionDescription {
	user := l.Username
	if user == "" {
		user = "-"
	}
	ip := l.Addr.Addr().Unmap()
	at := "IP4"
	if ip.Is6() {
		at = "IP6"
	}
	return &psdp.SessionDescription{
		Origin: psdp.Origin{
			Username: user, SessionID: l.SessionID, SessionVersion: l.SessionVersion,
			NetworkType: "IN", AddressType: at, UnicastAddress: ip.String(),
		},
		SessionName: "-",
		ConnectionInformation: &psdp.ConnectionInformation{
			NetworkType: "IN", AddressType: at, Address: &psdp.Address{Address: ip.String()},
		},
		TimeDescriptions: []psdp.TimeDescription{{}},
	}
}

// audio builds an RTP/AVP audio section with codecs; mux adds a=rtcp-mux.
func (l Local) audio(codecs []Codec, dir Direction, mux bool) *psdp.MediaDescription {
	md := &psdp.MediaDescription{MediaName: psdp.MediaName{
		Media: "audio", Port: psdp.RangedPort{Value: int(l.Addr.Port())}, Protos: []string{"RTP", "AVP"},
	}}
	for _, c := range codecs {
		pt := strconv.Itoa(int(c.PT))
		md.MediaName.Formats = append(md.MediaName.Formats, pt)
		rtpmap := pt + " " + c.Name + "/" + strconv.Itoa(c.ClockRate)
		if c.Channels > 1 {
			rtpmap += "/" + strconv.Itoa(c.Channels)
		}
		md.Attributes = append(md.Attributes, psdp.NewAttribute("rtpmap", rtpmap))
		if c.Fmtp != "" {
			md.Attributes = append(md.Attributes, psdp.NewAttribute("fmtp", pt+" "+c.Fmtp))
		}
	}
	ptime := l.Ptime
	if ptime == 0 {
		ptime = DefaultPtime
	}
	md.Attributes = append(md.Attributes, psdp.NewAttribute("ptime", strconv.Itoa(ptime)))
	if dir == "" {
		dir = SendRecv
	}
	md.Attributes = append(md.Attributes, psdp.NewPropertyAttribute(string(dir)))
	if l.RTCPMux {
		md.Attributes = append(md.Attributes, psdp.NewAttribute("rtcp", strconv.Itoa(int(l.Addr.Port()))))
		if mux {
			md.Attributes = append(md.Attributes, psdp.NewPropertyAttribute("rtcp-mux"))
		}
	}
	return md
}

// Offer returns an offer of one audio stream at l.Addr with l's codecs
// (and unless l.NoDTMF telephone-event at each of their clock rates).
func Offer(l Local) *psdp.SessionDescription {
	desc := l.session()
	codecs := l.codecs()
	if !l.NoDTMF {
		codecs = append(codecs[:len(codecs):len(codecs)], events(codecs)...)
	}
	desc.MediaDescriptions = []*psdp.MediaDescription{l.audio(codecs, l.Direction, true)}
	return desc
}

// Answered tells what Answer chose.
type Answered struct {
	Index  int    // the accepted m= section
	Codec  Codec  // the codec, with the offer's payload type
	DTMF   *Codec // telephone-event as offered, nil when not
	Remote Stream // the offered stream: where to send
}

// Answer answers offer (RFC 3264 §6): the first audio RTP/AVP stream with
// a port and a codec in common is accepted at l.Addr with the first of l's
// codecs that the offer has (our preference: a wideband codec both sides
// have beats G.711 listed first), with the offer's payload type, plus the
// telephone-event that goes with it (EventFor) if offered, in the reverse
// direction of the offer's;
// every other stream is rejected with port 0. With no stream accepted it
// returns ErrNotAcceptable.
func Answer(offer *psdp.SessionDescription, l Local) (*psdp.SessionDescription, Answered, error) {
	desc := l.session()
	if len(offer.TimeDescriptions) > 0 {
		desc.TimeDescriptions = []psdp.TimeDescription{{Timing: offer.TimeDescriptions[0].Timing}}
	}
	var ans Answered
	accepted := false
	for i, s := range Streams(offer) {
		om := offer.MediaDescriptions[i]
		if !accepted && s.Port != 0 && s.Media == "audio" && s.Proto == "RTP/AVP" {
			if c, dtmf, ok := choose(s.Codecs, l); ok {
				codecs := []Codec{c}
				if dtmf != nil {
					codecs = append(codecs, *dtmf)
				}
				desc.MediaDescriptions = append(desc.MediaDescriptions, l.audio(codecs, s.Direction.Reverse(), s.RTCPMux))
				ans = Answered{Index: i, Codec: c, DTMF: dtmf, Remote: s}
				accepted = true
				continue
			}
		}
		formats := om.MediaName.Formats
		if len(formats) == 0 {
			formats = []string{"0"}
		}
		desc.MediaDescriptions = append(desc.MediaDescriptions, &psdp.MediaDescription{MediaName: psdp.MediaName{
			Media: om.MediaName.Media, Protos: om.MediaName.Protos, Formats: formats,
		}})
	}
	if !accepted {
		return nil, Answered{}, ErrNotAcceptable
	}
	return desc, ans, nil
}

func choose(offered []Codec, l Local) (Codec, *Codec, bool) {
	for _, ours := range l.codecs() {
		if strings.EqualFold(ours.Name, TelephoneEvent.Name) {
			continue
		}
		// The same encoding, else (L16) its stereo form.
		for _, match := range []func(c Codec) bool{ours.Same, func(c Codec) bool { return stereoOf(c, ours) }} {
			for _, c := range offered {
				if match(c) {
					var dtmf *Codec
					if !l.NoDTMF {
						dtmf = EventFor(offered, c)
					}
					return c, dtmf, true
				}
			}
		}
	}
	return Codec{}, nil, false
}

// stereoOf: an offer of stereo L16 only (baresip's l16 module offers its
// rates in stereo first) is taken for our mono L16 at that rate: natkit
// decodes it by downmix and sends the same signal on both channels.
func stereoOf(offered, ours Codec) bool {
	return strings.EqualFold(offered.Name, "L16") && strings.EqualFold(ours.Name, "L16") &&
		offered.ClockRate == ours.ClockRate && offered.Channels == 2 && max(ours.Channels, 1) == 1
}
