package turnserver

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/peerpolicy"
	"github.com/natkit/natkit/pkg/turnclient"
)

// bypasses are the peer addresses of the coturn CVE classes (CVE-2020-26262
// and the IPv4-in-IPv6 deny-list bypasses): natkit must refuse every one,
// even with loopback opened for the test's own echo peer on 127.0.0.2 —
// except where the test's allow-list (127.0.0.0/8) makes it legitimate,
// which is why loopback targets point at the server's own ports.
func bypasses(s *Server) []struct {
	name string
	peer netip.AddrPort
} {
	own := s.addr("udp")
	relayPort := uint16(testRelayPorts.Min + 7)
	type b = struct {
		name string
		peer netip.AddrPort
	}
	ap := func(a string, p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(a), p) }
	return []b{
		{"unspecified v4 (CVE-2020-26262)", ap("0.0.0.0", 9)},
		{"unspecified v6 (CVE-2020-26262)", ap("::", 9)},
		{"loopback v6", ap("::1", 9)},
		{"metadata", ap("169.254.169.254", 80)},
		{"private 10/8", ap("10.0.0.1", 9)},
		{"private 172.16/12", ap("172.16.0.1", 9)},
		{"private 192.168/16", ap("192.168.1.1", 9)},
		{"cgnat", ap("100.64.0.1", 9)},
		{"unique-local", ap("fd00::1", 9)},
		{"link-local v6", ap("fe80::1", 9)},
		{"multicast", ap("224.0.0.1", 9)},
		{"broadcast", ap("255.255.255.255", 9)},
		{"server's own port", own},
		{"server's relay port", ap("127.0.0.1", relayPort)},
		{"mapped own port", ap("::ffff:127.0.0.1", own.Port())},
		{"mapped unspecified", ap("::ffff:0.0.0.0", 9)},
		{"mapped metadata", ap("::ffff:169.254.169.254", 80)},
		{"mapped private", ap("::ffff:10.0.0.1", 9)},
		{"compatible metadata", ap("::169.254.169.254", 80)},
		{"compatible private", ap("::192.168.1.1", 9)},
		{"compatible own port", ap("::127.0.0.1", own.Port())},
		{"siit metadata", ap("::ffff:0:169.254.169.254", 80)},
		{"nat64 metadata", ap("64:ff9b::a9fe:a9fe", 80)},
		{"nat64 private", ap("64:ff9b::a00:1", 9)},
		{"nat64 own port", ap("64:ff9b::7f00:1", own.Port())},
		{"nat64 local-use", ap("64:ff9b:1::a9fe:a9fe", 80)},
		{"6to4 metadata", ap("2002:a9fe:a9fe::1", 80)},
		{"6to4 private", ap("2002:c0a8:101::1", 9)},
		{"teredo metadata", ap("2001:0:4136:e378:8000:63bf:5601:5601", 80)},
		{"teredo private client", ap("2001:0:4136:e378:8000:63bf:f5ff:fffe", 9)},
	}
}

// TestPeerPolicyDeniesBypasses: CreatePermission and ChannelBind for every
// bypass form get 403 on UDP and TCP, and Send indications to them are
// dropped.
func TestPeerPolicyDeniesBypasses(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil)
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			c, ctx := allocated(t, s, tr)
			for _, b := range bypasses(s) {
				t.Run(b.name, func(t *testing.T) {
					var se *turnclient.ServerError
					err := c.CreatePermission(ctx, b.peer.Addr())
					// Loopback is allowed for the test; own ports are then
					// denied per transport address (ChannelBind, Send).
					if n := peerpolicy.Normalize(b.peer.Addr()); n.Addr.Is4() && n.Addr.IsLoopback() {
						if err != nil {
							t.Fatalf("CreatePermission %s: %v (loopback is allowed in this test)", b.peer, err)
						}
					} else if !errors.As(err, &se) || se.Code != 403 {
						t.Fatalf("CreatePermission %s: %v, want 403", b.peer, err)
					}
					_, err = c.ChannelBind(ctx, 0, b.peer)
					if !errors.As(err, &se) || se.Code != 403 {
						t.Fatalf("ChannelBind %s: %v, want 403", b.peer, err)
					}
				})
			}
			before := s.Stats().PeerDenied
			for _, b := range bypasses(s) {
				if err := c.Send(b.peer, []byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			want := before + int64(len(bypasses(s)))
			deadline := time.Now().Add(2 * time.Second)
			for s.Stats().PeerDenied < want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := s.Stats().PeerDenied; got != want {
				t.Errorf("peer-denied counter %d, want %d: a Send indication got through", got, want)
			}
			if st := s.Stats(); st.RelayedToPeers != 0 {
				t.Errorf("%d datagrams relayed to peers", st.RelayedToPeers)
			}
		})
	}
}
