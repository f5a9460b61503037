package pbx

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzValidate: whatever sipgo's parser lets through, the hand-written
// checks (validation, Via fix, loop hash, routing predicates) never panic.
// Seeds: the RFC 4475 torture messages.
func FuzzValidate(f *testing.F) {
	for _, kind := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join(tortureDir(f), kind, "*.dat"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err == nil {
				f.Add(b)
			}
		}
	}
	s := &Server{host: "127.0.0.1", ours: map[string]bool{domain: true}, local: map[netip.Addr]bool{netip.MustParseAddr("127.0.0.1"): true},
		addrs: Addrs{UDP: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5060")}}, key: []byte("k")}
	parser := sip.NewParser()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parser.ParseSIP(b)
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		req.SetSource("192.0.2.1:5062")
		if req.Via() == nil || req.CSeq() == nil {
			return // sipgo's transaction layer stops these
		}
		fixVia(req)
		if r := validate(req); r.code != 0 {
			if r.code < 400 || r.reason == "" {
				t.Fatalf("rejection %+v", r)
			}
			return
		}
		loopHash(req)
		s.looped(req)
		s.isOurs(req.Recipient)
		if req.Route() != nil {
			s.routedToUs(req)
		}
	})
}
