package anchor

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	"github.com/natkit/natkit/pkg/sdp"
	psdp "github.com/pion/sdp/v3"
)

// ErrNoCall is returned by Media.Answer for a Call-ID with no offer.
var ErrNoCall = errors.New("anchor: answer for a call with no offer")

// Media adapts an Anchor to the PBX's media hook (pbx.MediaAnchor): it
// keeps one anchored Call per SIP Call-ID and rewrites the SDP of the offer
// and the answer so that each phone sends its media to the relay.
//
// The caller's phone is leg A and the callee's leg B. The offer (the
// caller's SDP, forwarded to the callee) names leg B's port pair; the
// answer (the callee's SDP, forwarded to the caller) names leg A's. The
// address each SDP gave becomes its leg's expected address, used until the
// phone's own packets latch the leg (Leg.Expect).
//
// A Call relays one stream: the first m= section with a port (normally the
// audio). Further sections are passed as they came: the phones may reach
// each other directly for them, or not at all.
type Media struct {
	a  *Anchor
	ip netip.Addr

	mu    sync.Mutex
	calls map[string]*mediaCall
}

type mediaCall struct {
	c   *Call
	idx int // the anchored m= section
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

// Offer allocates the call's relay (or reuses it, for an offer sent again
// in the same call), expects the caller's media at the address its SDP
// names, and returns the SDP with leg B's port on the relay's address.
// An SDP with no stream to anchor is returned unchanged.
func (m *Media) Offer(_ context.Context, callID, _ string, body []byte) ([]byte, error) {
	desc, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	st, ok := anchored(sdp.Streams(desc))
	if !ok {
		return body, nil
	}
	m.mu.Lock()
	mc := m.calls[callID]
	if mc == nil {
		c, err := m.a.NewCall()
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
		mc = &mediaCall{c: c}
		m.calls[callID] = mc
		go m.forget(callID, mc)
	}
	mc.idx = st.Index
	m.mu.Unlock()
	expect(mc.c.Leg(A), st)
	return m.rewrite(desc, st.Index, mc.c.Leg(B).Port())
}

// Answer expects the callee's media at the address its SDP names and
// returns the SDP with leg A's port on the relay's address.
func (m *Media) Answer(_ context.Context, callID, _ string, body []byte) ([]byte, error) {
	m.mu.Lock()
	mc := m.calls[callID]
	m.mu.Unlock()
	if mc == nil {
		return nil, ErrNoCall
	}
	desc, err := sdp.Parse(body)
	if err != nil {
		return nil, err
	}
	sts := sdp.Streams(desc)
	if mc.idx >= len(sts) || sts[mc.idx].Port == 0 {
		return body, nil // the callee rejected the stream: nothing to relay
	}
	expect(mc.c.Leg(B), sts[mc.idx])
	return m.rewrite(desc, mc.idx, mc.c.Leg(A).Port())
}

// Release closes the call's relay; an unknown Call-ID is ignored.
func (m *Media) Release(callID string) {
	m.mu.Lock()
	mc := m.calls[callID]
	delete(m.calls, callID)
	m.mu.Unlock()
	if mc != nil {
		mc.c.Close()
	}
}

// Calls reports how many Call-IDs have a relay.
func (m *Media) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls)
}

// forget drops a call the anchor closed by itself (media timeout, Close).
func (m *Media) forget(callID string, mc *mediaCall) {
	<-mc.c.Done()
	m.mu.Lock()
	if m.calls[callID] == mc {
		delete(m.calls, callID)
	}
	m.mu.Unlock()
}

// rewrite points section idx of desc at port on the relay's address.
func (m *Media) rewrite(desc *psdp.SessionDescription, idx int, port uint16) ([]byte, error) {
	ports := make([]uint16, len(desc.MediaDescriptions))
	ports[idx] = port
	if err := sdp.Rewrite(desc, m.ip, ports); err != nil {
		return nil, err
	}
	return sdp.Marshal(desc)
}

// anchored is the stream a call relays: the first with a port.
func anchored(sts []sdp.Stream) (sdp.Stream, bool) {
	for _, s := range sts {
		if s.Port != 0 {
			return s, true
		}
	}
	return sdp.Stream{}, false
}

// expect points a leg at the address a stream's SDP names, until latching.
func expect(l *Leg, st sdp.Stream) {
	rtcp := st.RTCP
	if st.RTCPMux {
		rtcp = st.Addr
	}
	l.Expect(st.Addr, rtcp)
}
