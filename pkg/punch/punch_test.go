package punch

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/rendezvous"
)

func startServer(t *testing.T) *rendezvous.Server {
	t.Helper()
	s, err := rendezvous.New(rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.2:0")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go s.Serve(ctx)
	t.Cleanup(func() { cancel(); s.Close() })
	return s
}

func TestLoopbackPair(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	reps := make([]Report, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = Run(ctx, Options{Server: s.Addr(), Session: "loop-test", Duration: 200 * time.Millisecond})
		}()
	}
	wg.Wait()
	for i, r := range reps {
		if errs[i] != nil || !r.Success {
			t.Errorf("peer %d: %v %+v reason %v", i, errs[i], r, r.FailureReason)
			continue
		}
		t.Logf("peer %d: path %s strategy %s connect %.1f ms rtt %v loss %v", i, *r.Path, *r.Strategy, *r.TimeToConnectMs, *r.RTTMs, *r.LossPct)
		if r.Self.NATType != TypeOpenInternet {
			t.Errorf("loopback classified %s", r.Self.NATType)
		}
	}
}

func TestLoopbackPeerNeverJoined(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	r, err := Run(ctx, Options{Server: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Success || r.FailureReason == nil || *r.FailureReason != ReasonPeerNeverJoined || r.Session == nil {
		t.Errorf("report %+v", r)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("took %v with a 3s timeout", time.Since(start))
	}
}
