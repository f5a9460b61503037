package pbx

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/pbx/location"
	"github.com/natkit/natkit/pkg/pbx/registrar"
)

// fixVia adds received and fills rport in the top Via (RFC 3261 §18.2.1,
// RFC 3581 §4): received whenever the sent-by host is not the packet's
// source IP, rport whenever the client asked for it. Responses then go
// back to where the request came from, through the client's NAT.
func fixVia(req *sip.Request) {
	via := req.Via()
	src := source(req)
	if !src.IsValid() {
		return
	}
	ip := src.Addr().String()
	if h, err := netip.ParseAddr(strings.Trim(via.Host, "[]")); err != nil || h.Unmap() != src.Addr() {
		via.Params.Add("received", ip)
	}
	if v, ok := via.Params.Get("rport"); ok && v == "" {
		via.Params.Add("rport", strconv.Itoa(int(src.Port())))
		if !via.Params.Has("received") {
			via.Params.Add("received", ip)
		}
	}
}

// aorOf is the AOR of a URI as the registrar keys it.
func aorOf(u sip.Uri) string { return registrar.AOR(u) }

// natted reports whether a binding was registered from an address other
// than its Contact's: the client is behind a NAT (kamailio's
// nat_uac_test 19).
func natted(b location.Binding) bool {
	var u sip.Uri
	if err := sip.ParseUri(b.Contact, &u); err != nil {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return true
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)) != b.Received
}

// natSet is the AORs the keep-alive loop visits: those registered through
// this server since it started, and those its store held at start when
// the store can list them (location.Lister).
type natSet struct {
	mu sync.Mutex
	m  map[string]struct{}
}

func (n *natSet) add(aor string) {
	n.mu.Lock()
	n.m[aor] = struct{}{}
	n.mu.Unlock()
}

func (n *natSet) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.m))
	for a := range n.m {
		out = append(out, a)
	}
	return out
}

func (n *natSet) remove(aor string) {
	n.mu.Lock()
	delete(n.m, aor)
	n.mu.Unlock()
}

// keepAlivePrefix starts the Via branch of keep-alive OPTIONS, so that
// their answers are recognised and absorbed.
const keepAlivePrefix = sip.RFC3261BranchMagicCookie + "-nkka"

// restoredNATs adds to the keep-alive set the AORs of the store, those
// registered before a restart: their phones may not register again for an
// hour, and their NAT mappings would close long before.
func (s *Server) restoredNATs() {
	l, ok := s.cfg.Locations.(location.Lister)
	if !ok {
		return
	}
	aors, err := l.AORs(s.ctx)
	if err != nil {
		s.log.Warn("keep-alives: cannot list the registrations", "error", err)
		return
	}
	for _, aor := range aors {
		s.nat.add(aor)
	}
}

// keepAlives sends, every KeepAlive, an OPTIONS (UDP) or a CRLF pair
// (TCP, TLS: RFC 5626 §4.4.1) to every NATed binding, from the server's
// socket to the binding's received address, and expires old bindings.
func (s *Server) keepAlives() {
	s.restoredNATs()
	t := time.NewTicker(s.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		s.cfg.Locations.Expire(s.ctx, now)
		for _, aor := range s.nat.list() {
			bs, err := s.cfg.Locations.Get(s.ctx, aor)
			if err != nil {
				continue
			}
			if len(bs) == 0 {
				s.nat.remove(aor)
				continue
			}
			for _, b := range bs {
				if b.Expires.After(now) && natted(b) {
					s.keepAlive(b)
				}
			}
		}
	}
}

func (s *Server) keepAlive(b location.Binding) {
	switch strings.ToUpper(b.Transport) {
	case "UDP", "":
		if len(s.udp) == 0 {
			return
		}
		pc := s.udp[0]
		to := b.Received
		if ap := pc.LocalAddr().(*net.UDPAddr).AddrPort(); ap.Addr().Is4() && to.Addr().Is6() {
			return
		}
		if _, err := pc.WriteToUDPAddrPort(s.keepAliveOptions(b), to); err == nil {
			s.stats.keepAlives.Add(1)
		}
	default:
		c, err := s.ua.TransportLayer().GetConnection(b.Transport, b.Received.String())
		if err != nil {
			return
		}
		if w, ok := c.(io.Writer); ok {
			if _, err := w.Write([]byte("\r\n\r\n")); err == nil {
				s.stats.keepAlives.Add(1)
			}
		}
	}
}

// keepAliveOptions is the OPTIONS sent to a NATed UDP binding.
func (s *Server) keepAliveOptions(b location.Binding) []byte {
	var r [12]byte
	rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	hostport := net.JoinHostPort(s.host, strconv.Itoa(s.port("UDP")))
	if strings.Contains(s.host, ":") && !strings.HasPrefix(s.host, "[") {
		hostport = "[" + s.host + "]:" + strconv.Itoa(s.port("UDP"))
	}
	var sb strings.Builder
	sb.WriteString("OPTIONS " + b.Contact + " SIP/2.0\r\n")
	sb.WriteString("Via: SIP/2.0/UDP " + hostport + ";branch=" + keepAlivePrefix + id[:16] + ";rport\r\n")
	sb.WriteString("Max-Forwards: 70\r\n")
	sb.WriteString("From: <sip:keepalive@" + hostport + ">;tag=" + id[16:] + "\r\n")
	sb.WriteString("To: <" + b.Contact + ">\r\n")
	sb.WriteString("Call-ID: " + id + "@natkit\r\n")
	sb.WriteString("CSeq: 1 OPTIONS\r\n")
	sb.WriteString("User-Agent: natkit\r\nContent-Length: 0\r\n\r\n")
	return []byte(sb.String())
}
