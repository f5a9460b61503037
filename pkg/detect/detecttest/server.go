// Package detecttest runs a small RFC 5780 STUN server on loopback, two
// addresses × two ports, that can be told to misbehave the ways real
// servers do, for tests of NAT behaviour discovery.
package detecttest

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/natkit/natkit/pkg/stun"
)

// Behavior scripts the server. The zero value is a correct RFC 5780 server.
type Behavior struct {
	// IgnoreChange answers CHANGE-REQUEST from the address asked.
	IgnoreChange bool
	// RejectChange answers CHANGE-REQUEST with 420 Unknown Attribute.
	RejectChange bool
	// DropChange never answers requests carrying CHANGE-REQUEST.
	DropChange bool
	// OtherSameIP advertises OTHER-ADDRESS on the server's own IP.
	OtherSameIP bool
	// NoOther sends no OTHER-ADDRESS (a plain RFC 5389 server).
	NoOther bool
	// Software is sent as SOFTWARE ("detecttest" when empty).
	Software string
}

// Server is a running fake with four sockets: Addr (IP1:port1), AltPort
// (IP1:port2), AltIP (IP2:port1) and Other (IP2:port2).
type Server struct {
	Addr, AltPort, AltIP, Other netip.AddrPort

	b     Behavior
	socks map[netip.AddrPort]net.PacketConn
	wg    sync.WaitGroup
}

// IP1 and IP2 are the server's addresses (Linux routes all of 127/8 to lo).
var (
	IP1 = netip.MustParseAddr("127.0.0.1")
	IP2 = netip.MustParseAddr("127.0.0.2")
)

// New starts a server; it stops in t.Cleanup.
func New(t testing.TB, b Behavior) *Server {
	t.Helper()
	if b.Software == "" {
		b.Software = "detecttest"
	}
	for try := 0; try < 20; try++ {
		s, err := listen(b)
		if err == nil {
			for _, pc := range s.socks {
				s.wg.Add(1)
				go s.serve(pc)
			}
			t.Cleanup(s.close)
			return s
		}
	}
	t.Fatal("detecttest: cannot bind two ports on 127.0.0.1 and 127.0.0.2")
	return nil
}

func listen(b Behavior) (*Server, error) {
	s := &Server{b: b, socks: map[netip.AddrPort]net.PacketConn{}}
	var ports [2]uint16
	for i := range ports {
		pc, err := net.ListenPacket("udp4", IP1.String()+":0")
		if err != nil {
			s.close()
			return nil, err
		}
		ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		ports[i] = ap.Port()
		s.socks[netip.AddrPortFrom(IP1, ap.Port())] = pc
		pc2, err := net.ListenPacket("udp4", netip.AddrPortFrom(IP2, ap.Port()).String())
		if err != nil {
			s.close()
			return nil, err
		}
		s.socks[netip.AddrPortFrom(IP2, ap.Port())] = pc2
	}
	s.Addr, s.AltPort = netip.AddrPortFrom(IP1, ports[0]), netip.AddrPortFrom(IP1, ports[1])
	s.AltIP, s.Other = netip.AddrPortFrom(IP2, ports[0]), netip.AddrPortFrom(IP2, ports[1])
	return s, nil
}

func (s *Server) close() {
	for _, pc := range s.socks {
		pc.Close()
	}
	s.wg.Wait()
}

// opposite returns the address differing from a in IP, port or both.
func (s *Server) opposite(a netip.AddrPort, ip, port bool) netip.AddrPort {
	addr, p := a.Addr(), a.Port()
	if ip {
		addr = IP1
		if a.Addr() == IP1 {
			addr = IP2
		}
	}
	if port {
		p = s.Addr.Port()
		if a.Port() == s.Addr.Port() {
			p = s.AltPort.Port()
		}
	}
	return netip.AddrPortFrom(addr, p)
}

func (s *Server) serve(pc net.PacketConn) {
	defer s.wg.Done()
	local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
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
		client := from.(*net.UDPAddr).AddrPort()
		flags, hasChange, _ := m.ChangeRequest()
		if hasChange && s.b.DropChange {
			continue
		}
		if hasChange && s.b.RejectChange {
			b := stun.NewBuilder(nil, stun.BindingError, m.Cookie, m.TID)
			b.AddErrorCode(420, "Unknown Attribute")
			pc.WriteTo(b.Bytes(), from)
			continue
		}
		src := local
		if hasChange && !s.b.IgnoreChange {
			src = s.opposite(local, flags&stun.ChangeIP != 0, flags&stun.ChangePort != 0)
		}
		dst := client
		if port, ok, _ := m.ResponsePort(); ok {
			dst = netip.AddrPortFrom(client.Addr(), port)
		}
		b := stun.NewBuilder(nil, stun.BindingSuccess, m.Cookie, m.TID)
		b.AddXORAddress(stun.AttrXORMappedAddress, client)
		b.AddAddress(stun.AttrResponseOrigin, src)
		switch {
		case s.b.NoOther:
		case s.b.OtherSameIP:
			b.AddAddress(stun.AttrOtherAddress, s.opposite(local, false, true))
		default:
			b.AddAddress(stun.AttrOtherAddress, s.opposite(local, true, true))
		}
		b.AddString(stun.AttrSoftware, s.b.Software)
		b.AddFingerprint()
		s.socks[src].WriteTo(b.Bytes(), net.UDPAddrFromAddrPort(dst))
	}
}
