package anchor

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/natkit/natkit/pkg/sdp"
	psdp "github.com/pion/sdp/v3"
)

// ErrNoCall is returned by Media.Answer for a Call-ID with no offer.
var ErrNoCall = errors.New("anchor: answer for a call with no offer")

// Media adapts an Anchor to the PBX's media hook (pbx.MediaAnchor): it
// keeps the anchored streams of each SIP Call-ID and rewrites every SDP of
// the call (offer and answer, re-INVITE and UPDATE too) so that each phone
// sends its media to the relay.
//
// Each m= section with a port gets its own relay (a Call: audio, video...),
// so that no stream of the call is left with an address the other phone
// cannot reach. The party whose SDP came first is leg A (the caller, or the
// callee of a late-offer INVITE that offers in its 200), the other leg B;
// each SDP names the other leg's port pair, and the address it gave becomes
// its own leg's expected address until the phone's packets latch the leg
// (Leg.Expect). A re-INVITE keeps the relay ports, so a re-offer (hold,
// codec change, a phone that moved) is never re-anchored to new ports.
type Media struct {
	a  *Anchor
	ip netip.Addr

	mu    sync.Mutex
	calls map[string]*mediaCall

	iceOffers atomic.Uint64
}

type mediaCall struct {
	aTag    string        // the dialog tag of leg A's party
	streams map[int]*Call // m= index → its relay
}

// side is the leg of the party with dialog tag tag.
func (mc *mediaCall) side(tag string) Side {
	if tag == mc.aTag {
		return A
	}
	return B
}

// NewMedia returns the adapter for a, whose sockets phones reach at ip (the
// public address: the anchor may bind to a wildcard or a private one).
func NewMedia(a *Anchor, ip netip.Addr) (*Media, error) {
	if !ip.IsValid() || ip.IsUnspecified() {
		return nil, errors.New("anchor: media needs the address phones reach the relay at")
	}
	return &Media{a: a, ip: ip.Unmap(), calls: map[string]*mediaCall{}}, nil
}

// IP is the address written into rewritten SDP.
func (m *Media) IP() netip.Addr { return m.ip }

// Offer rewrites an offer made by the party with dialog tag tag (the From
// tag of an INVITE, re-INVITE or UPDATE; the To tag of a 2xx that offers):
// it allocates a relay for each of its streams that has none yet (the first
// offer of the call, or a stream a re-offer adds), expects the party's
// media where the SDP says, and returns the SDP naming the other leg's
// ports on the relay's address. An SDP with no stream to anchor is
// returned unchanged.
func (m *Media) Offer(_ context.Context, callID, tag string, body []byte) ([]byte, error) {
	desc, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	if sdp.HasICE(desc) {
		// Both ends do ICE (RFC 8445): they find their own path, direct
		// or through their TURN server, and a rewritten address would
		// fail their checks (a=ice-mismatch). The SDP passes unchanged.
		m.iceOffers.Add(1)
		return body, nil
	}
	sts := sdp.Streams(desc)
	if !anchorable(sts) {
		return body, nil
	}
	m.mu.Lock()
	mc := m.calls[callID]
	fresh := mc == nil
	if fresh {
		mc = &mediaCall{aTag: tag, streams: map[int]*Call{}}
	}
	var added []*Call
	for _, st := range sts {
		if st.Port == 0 || mc.streams[st.Index] != nil {
			continue
		}
		c, err := m.a.NewCall()
		if err != nil {
			m.mu.Unlock()
			for _, c := range added {
				c.Close()
			}
			return nil, err
		}
		mc.streams[st.Index] = c
		added = append(added, c)
	}
	if fresh {
		m.calls[callID] = mc
	}
	ports := m.expect(mc, mc.side(tag), sts)
	m.mu.Unlock()
	for _, c := range added {
		go m.forget(callID, mc, c)
	}
	return m.rewrite(desc, ports)
}

// Answer rewrites the answer of the party with dialog tag tag (the To tag
// of a 183 or 2xx, the From tag of an ACK answering a 2xx's offer): it
// expects the party's media where the SDP says and returns the SDP naming
// the other leg's ports. A stream the answer rejects (port 0) keeps its
// relay until the call ends: a later re-offer may enable it again.
func (m *Media) Answer(_ context.Context, callID, tag string, body []byte) ([]byte, error) {
	m.mu.Lock()
	mc := m.calls[callID]
	m.mu.Unlock()
	desc, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	if mc == nil {
		if sdp.HasICE(desc) {
			return body, nil // the answer to an ICE offer, not anchored
		}
		return nil, ErrNoCall
	}
	m.mu.Lock()
	ports := m.expect(mc, mc.side(tag), sdp.Streams(desc))
	m.mu.Unlock()
	return m.rewrite(desc, ports)
}

// expect points side's leg of each relayed stream at the address the
// stream's SDP names and returns, per m= section, the port of the other
// leg that the rewritten SDP must name (0: left as it is). m.mu is held.
func (m *Media) expect(mc *mediaCall, side Side, sts []sdp.Stream) []uint16 {
	ports := make([]uint16, len(sts))
	for _, st := range sts {
		c := mc.streams[st.Index]
		if st.Port == 0 || c == nil {
			continue
		}
		expect(c.Leg(side), st)
		ports[st.Index] = c.Leg(side ^ 1).Port()
	}
	return ports
}

// Release closes the call's relays; an unknown Call-ID is ignored.
func (m *Media) Release(callID string) {
	m.mu.Lock()
	mc := m.calls[callID]
	delete(m.calls, callID)
	var cs []*Call
	if mc != nil {
		for _, c := range mc.streams {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// ICEOffers counts the offers passed unanchored because they carry ICE.
func (m *Media) ICEOffers() uint64 { return m.iceOffers.Load() }

// Calls reports how many Call-IDs have a relay.
func (m *Media) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls)
}

// forget drops a stream's relay that the anchor closed by itself (media
// timeout, Close), and the call with its last one.
func (m *Media) forget(callID string, mc *mediaCall, c *Call) {
	<-c.Done()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, s := range mc.streams {
		if s == c {
			delete(mc.streams, i)
		}
	}
	if len(mc.streams) == 0 && m.calls[callID] == mc {
		delete(m.calls, callID)
	}
}

// rewrite points the sections of desc with a nonzero port in ports at
// that port on the relay's address.
func (m *Media) rewrite(desc *psdp.SessionDescription, ports []uint16) ([]byte, error) {
	if len(ports) != len(desc.MediaDescriptions) {
		ports = append(ports, make([]uint16, len(desc.MediaDescriptions)-len(ports))...)
	}
	if err := sdp.Rewrite(desc, m.ip, ports); err != nil {
		return nil, err
	}
	return sdp.Marshal(desc)
}

// anchorable tells whether an SDP has a stream to relay: one with a port.
func anchorable(sts []sdp.Stream) bool {
	for _, s := range sts {
		if s.Port != 0 {
			return true
		}
	}
	return false
}

// expect points a leg at the address a stream's SDP names, until latching.
func expect(l *Leg, st sdp.Stream) {
	rtcp := st.RTCP
	if st.RTCPMux {
		rtcp = st.Addr
	}
	l.Expect(st.Addr, rtcp)
}
