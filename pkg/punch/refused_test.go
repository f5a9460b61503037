package punch

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/rendezvous"
)

// TestLoopbackQuotaExceeded: a peer whose address already holds its quota
// of sessions on the server fails with rendezvous-quota-exceeded, not the
// catch-all rendezvous-refused.
func TestLoopbackQuotaExceeded(t *testing.T) {
	leaktest.Check(t)
	s, err := rendezvous.New(rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, MaxSessionsPerHost: 1})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(sctx) }()
	t.Cleanup(func() { scancel(); s.Close(); <-done })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Another session from 127.0.0.1 takes the address's one session.
	tc, err := net.Dial("tcp", s.TCPAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := rendezvous.NewSession("holder")
	holder, err := rendezvous.NewClient(rendezvous.ClientConfig{Server: s.Addr(), Session: sess, Conn: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := Run(ctx, Options{Server: s.Addr(), Session: "latecomer"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Success || r.FailureReason == nil || *r.FailureReason != ReasonQuotaExceeded {
		t.Errorf("report: %s, want %s", describe(r), ReasonQuotaExceeded)
	}
}
