package sdp

import (
	"net/netip"
	"strconv"
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// Direction is a stream's a=sendrecv, sendonly, recvonly or inactive
// (RFC 3264 §5.1), from the sender's point of view.
type Direction string

// The directions; a stream with none is SendRecv.
const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// Reverse returns the direction an answer gives to a stream offered d.
func (d Direction) Reverse() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	}
	return d
}

// Codec is one payload format: a payload type and its a=rtpmap, a=fmtp.
type Codec struct {
	PT        uint8
	Name      string // "PCMU"; encoding names compare case-insensitively
	ClockRate int
	Channels  int    // 0: not given (1)
	Fmtp      string // a=fmtp parameters, "" when none
}

// Same reports whether c and o are the same encoding (name, clock rate and
// channels), whatever their payload types.
func (c Codec) Same(o Codec) bool {
	ch := func(n int) int { return max(n, 1) }
	return strings.EqualFold(c.Name, o.Name) && c.ClockRate == o.ClockRate && ch(c.Channels) == ch(o.Channels)
}

// static holds the RFC 3551 payload types a phone may use without a=rtpmap.
var static = map[uint8]Codec{
	0:  {PT: 0, Name: "PCMU", ClockRate: 8000},
	3:  {PT: 3, Name: "GSM", ClockRate: 8000},
	4:  {PT: 4, Name: "G723", ClockRate: 8000},
	8:  {PT: 8, Name: "PCMA", ClockRate: 8000},
	9:  {PT: 9, Name: "G722", ClockRate: 8000},
	18: {PT: 18, Name: "G729", ClockRate: 8000},
}

// Stream is what a call needs to know about one m= section.
type Stream struct {
	Index int    // position among the m= sections
	Media string // "audio"
	Proto string // "RTP/AVP"
	Port  int    // the m= port; 0 is a rejected or disabled stream
	// Addr is where the stream's RTP goes: the media-level c= address, or
	// the session-level one, and Port. It is the zero AddrPort when neither
	// c= holds an IP address (none, or a host name).
	Addr netip.AddrPort
	// RTCP is where RTCP goes: a=rtcp (RFC 3605) when present, the RTP
	// address when a=rtcp-mux (RFC 5761) is, else the RTP port + 1.
	RTCP    netip.AddrPort
	RTCPMux bool
	// Hold is an address of 0.0.0.0 or :: (the RFC 2543 way to hold).
	Hold      bool
	Codecs    []Codec // in m= order; formats that are not numbers are skipped
	Direction Direction
}

// Streams describes every m= section of desc.
func Streams(desc *psdp.SessionDescription) []Stream {
	sessDir := SendRecv
	for _, a := range desc.Attributes {
		if d, ok := direction(a.Key); ok {
			sessDir = d
		}
	}
	out := make([]Stream, 0, len(desc.MediaDescriptions))
	for i, md := range desc.MediaDescriptions {
		s := Stream{
			Index:     i,
			Media:     md.MediaName.Media,
			Proto:     strings.Join(md.MediaName.Protos, "/"),
			Port:      md.MediaName.Port.Value,
			Direction: sessDir,
		}
		ci := md.ConnectionInformation
		if ci == nil || ci.Address == nil {
			ci = desc.ConnectionInformation
		}
		ip, ok := connAddr(ci)
		if ok {
			s.Addr = netip.AddrPortFrom(ip, uint16(s.Port))
			s.Hold = ip.IsUnspecified()
		}
		rtpmap := map[uint8]Codec{}
		fmtp := map[uint8]string{}
		var rtcp string
		for _, a := range md.Attributes {
			switch a.Key {
			case "rtpmap":
				if c, ok := parseRTPMap(a.Value); ok {
					rtpmap[c.PT] = c
				}
			case "fmtp":
				pt, params, _ := strings.Cut(a.Value, " ")
				if n, err := strconv.ParseUint(pt, 10, 7); err == nil {
					fmtp[uint8(n)] = strings.TrimSpace(params)
				}
			case "rtcp":
				rtcp = a.Value
			case "rtcp-mux":
				s.RTCPMux = true
			default:
				if d, ok := direction(a.Key); ok {
					s.Direction = d
				}
			}
		}
		for _, f := range md.MediaName.Formats {
			n, err := strconv.ParseUint(f, 10, 7)
			if err != nil {
				continue
			}
			pt := uint8(n)
			c, ok := rtpmap[pt]
			if !ok {
				c, ok = static[pt]
			}
			if !ok {
				c = Codec{PT: pt}
			}
			c.Fmtp = fmtp[pt]
			s.Codecs = append(s.Codecs, c)
		}
		s.RTCP = rtcpAddr(s, rtcp)
		out = append(out, s)
	}
	return out
}

func direction(key string) (Direction, bool) {
	switch d := Direction(key); d {
	case SendRecv, SendOnly, RecvOnly, Inactive:
		return d, true
	}
	return "", false
}

// connAddr returns the IP address of a c= line (without a multicast
// /ttl/range suffix).
func connAddr(ci *psdp.ConnectionInformation) (netip.Addr, bool) {
	if ci == nil || ci.Address == nil {
		return netip.Addr{}, false
	}
	a, _, _ := strings.Cut(ci.Address.Address, "/")
	ip, err := netip.ParseAddr(a)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// parseRTPMap reads "PT name/rate[/channels]".
func parseRTPMap(v string) (Codec, bool) {
	pt, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	n, err := strconv.ParseUint(pt, 10, 7)
	if !ok || err != nil {
		return Codec{}, false
	}
	parts := strings.Split(strings.TrimSpace(enc), "/")
	c := Codec{PT: uint8(n), Name: parts[0]}
	if len(parts) > 1 {
		c.ClockRate, _ = strconv.Atoi(parts[1])
	}
	if len(parts) > 2 {
		c.Channels, _ = strconv.Atoi(parts[2])
	}
	return c, c.Name != ""
}

// rtcpAddr applies RFC 3605 ("a=rtcp:port [IN IP4 addr]") and RFC 5761.
func rtcpAddr(s Stream, attr string) netip.AddrPort {
	ip := s.Addr.Addr()
	if f := fields(attr); len(f) > 0 {
		port, err := strconv.ParseUint(f[0], 10, 16)
		if err == nil {
			if len(f) >= 4 && strings.EqualFold(f[1], "IN") {
				if a, err := netip.ParseAddr(f[3]); err == nil && a.Zone() == "" {
					ip = a.Unmap()
				}
			}
			if !ip.IsValid() {
				return netip.AddrPort{}
			}
			return netip.AddrPortFrom(ip, uint16(port))
		}
	}
	if !ip.IsValid() || s.Port == 0 {
		return netip.AddrPort{}
	}
	if s.RTCPMux {
		return s.Addr
	}
	return netip.AddrPortFrom(ip, uint16(s.Port+1))
}
