// Package stunclienttest runs a small, scriptable STUN server on loopback
// for tests of STUN clients: it can drop requests, answer RFC 3489 style,
// answer with an error or garbage, or answer from another address.
package stunclienttest

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// Behavior scripts the server. The zero value answers every Binding request
// with XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS.
type Behavior struct {
	// Drop ignores the first Drop requests (to exercise retransmission).
	Drop int
	// Silent never answers.
	Silent bool
	// Classic answers RFC 3489 style: MAPPED-ADDRESS, SOURCE-ADDRESS and
	// CHANGED-ADDRESS, and no magic-cookie attributes.
	Classic bool
	// ErrorCode, when set, answers with a Binding error response.
	ErrorCode int
	Reason    string
	// Garbage answers with bytes that are not STUN, then (after them) with
	// a STUN message carrying another transaction ID; never a real answer.
	Garbage bool
	// FromAlt answers from a second socket on another port.
	FromAlt bool
	// Mapped rewrites the reflexive address reported (to fake a NAT).
	Mapped func(netip.AddrPort) netip.AddrPort
	// Software is sent as SOFTWARE ("stunclienttest" when empty).
	Software string
	// Delay holds each answer back.
	Delay time.Duration
}

// Server is a running fake.
type Server struct {
	// Addr is where it listens; Alt is the second socket (for FromAlt and
	// OTHER-ADDRESS).
	Addr, Alt netip.AddrPort

	b        Behavior
	pc, alt  net.PacketConn
	requests atomic.Int64
	wg       sync.WaitGroup
}

// New starts a server on 127.0.0.1 port 0; it stops in t.Cleanup.
func New(t testing.TB, b Behavior) *Server {
	t.Helper()
	return NewOn(t, "127.0.0.1:0", b)
}

// NewOn starts a server on addr (e.g. "[::1]:0").
func NewOn(t testing.TB, addr string, b Behavior) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(addr)
	alt, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	if b.Software == "" {
		b.Software = "stunclienttest"
	}
	s := &Server{b: b, pc: pc, alt: alt,
		Addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), Alt: alt.LocalAddr().(*net.UDPAddr).AddrPort()}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		pc.Close()
		alt.Close()
		s.wg.Wait()
	})
	return s
}

// Requests is the number of Binding requests received.
func (s *Server) Requests() int { return int(s.requests.Load()) }

// UDPAddr is Addr as a *net.UDPAddr.
func (s *Server) UDPAddr() *net.UDPAddr { return net.UDPAddrFromAddrPort(s.Addr) }

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := stun.Parse(buf[:n])
		if err != nil || m.Type != stun.BindingRequest {
			continue
		}
		if k := s.requests.Add(1); s.b.Silent || int(k) <= s.b.Drop {
			continue
		}
		resp := s.answer(m, from.(*net.UDPAddr).AddrPort())
		out := s.pc
		if s.b.FromAlt {
			out = s.alt
		}
		if s.b.Delay > 0 {
			time.Sleep(s.b.Delay)
		}
		for _, r := range resp {
			out.WriteTo(r, from)
		}
	}
}

func (s *Server) answer(req *stun.Message, from netip.AddrPort) [][]byte {
	mapped := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if s.b.Mapped != nil {
		mapped = s.b.Mapped(mapped)
	}
	origin := s.Addr
	if s.b.FromAlt {
		origin = s.Alt
	}
	if s.b.Garbage {
		other := req.TID
		other[0] ^= 0xff
		b := stun.NewBuilder(nil, stun.BindingSuccess, req.Cookie, other)
		b.AddXORAddress(stun.AttrXORMappedAddress, netip.MustParseAddrPort("192.0.2.66:6666"))
		junk := make([]byte, 24)
		copy(junk, "this is not a stun reply")
		short := make([]byte, 20) // matching ID, bad length field: not a message
		binary.BigEndian.PutUint16(short[2:4], 400)
		binary.BigEndian.PutUint32(short[4:8], req.Cookie)
		copy(short[8:], req.TID[:])
		return [][]byte{junk, short, b.Bytes()}
	}
	if s.b.ErrorCode != 0 {
		b := stun.NewBuilder(nil, stun.BindingError, req.Cookie, req.TID)
		b.AddErrorCode(s.b.ErrorCode, s.b.Reason)
		b.AddString(stun.AttrSoftware, s.b.Software)
		return [][]byte{b.Bytes()}
	}
	b := stun.NewBuilder(nil, stun.BindingSuccess, req.Cookie, req.TID)
	if s.b.Classic {
		b.AddAddress(stun.AttrMappedAddress, mapped)
		b.AddAddress(stun.AttrSourceAddress, origin)
		b.AddAddress(stun.AttrChangedAddress, s.Alt)
		b.AddString(stun.AttrSoftware, s.b.Software)
		return [][]byte{b.Bytes()}
	}
	b.AddXORAddress(stun.AttrXORMappedAddress, mapped)
	b.AddAddress(stun.AttrResponseOrigin, origin)
	b.AddAddress(stun.AttrOtherAddress, s.Alt)
	b.AddString(stun.AttrSoftware, s.b.Software)
	b.AddFingerprint()
	return [][]byte{b.Bytes()}
}
