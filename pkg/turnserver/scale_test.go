package turnserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/turnclient"
)

// TestTenThousandAllocations: 100 users make 100 allocations each (their
// quota); the 101st of a user gets 486 and a 101st user 508 (total quota);
// memory per allocation is bounded; every allocation is released when its
// lifetime ends, with its goroutines, sockets and quota.
func TestTenThousandAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 10,000 allocations take a few seconds")
	}
	const users, perUser = 100, 100
	// The lifetime leaves room for a loaded machine to make all 10,000
	// before the first expire (4 s did not: 5,684 had expired in one CI
	// run, and it took 9.6 s with a load average of 8 on 2 cores); the
	// expiry check waits for it.
	const lifetime = 30 * time.Second
	var list []User
	for i := 0; i <= users; i++ {
		list = append(list, User{Name: fmt.Sprintf("u%d", i), Password: "pw"})
	}
	leaktest.Check(t)
	s := startServer(t, func(c *Config) {
		c.Users = list
		c.UserQuota = perUser
		c.TotalQuota = users * perUser
		c.RelayPorts = PortRange{16000, 31999}
		c.RelayIP = ownLoopback()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Learn realm and nonce once (pion's nonces are stateless: any 5-tuple
	// may use them), so that 10,000 allocations need no 401 each.
	c0 := dial(t, s, "udp", "u0", "pw")
	if _, err := c0.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	c0.Release(ctx)
	realm, nonce := c0.Realm(), c0.Nonce()
	c0.Close()

	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()

	// Each allocation comes from its own client port; the socket is closed
	// once allocated (the allocation lives on until its lifetime ends),
	// and ports are never reused, so no 5-tuple repeats.
	var port atomic.Int32
	port.Store(40000)
	ip := []string{"127.0.0.3", "127.0.0.4"}
	listen := func(string, string) (net.PacketConn, error) {
		for {
			p := port.Add(1)
			pc, err := net.ListenPacket("udp4", fmt.Sprintf("%s:%d", ip[p%2], 40000+(p-40000)/2))
			if err == nil {
				return pc, nil
			}
			if p > 60000 {
				return nil, err
			}
		}
	}
	allocate := func(user string) error {
		c, err := turnclient.Dial(ctx, turnclient.Config{Server: s.addr("udp"), Username: user, Password: "pw",
			Realm: realm, Nonce: nonce, Lifetime: lifetime, ListenPacket: listen})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Allocate(ctx)
		return err
	}
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	jobs := make(chan string)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range jobs {
				if err := allocate(u); err != nil {
					if failed.Add(1) < 5 {
						t.Errorf("%s: %v", u, err)
					}
				}
			}
		}()
	}
	for i := 0; i < users*perUser; i++ {
		jobs <- fmt.Sprintf("u%d", i%users)
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	if f := failed.Load(); f > 0 {
		live, qu := s.quota.snapshot()
		t.Fatalf("%d allocations failed; %+v; quota live %d users %d", f, s.Stats(), live, qu)
	}
	if took >= lifetime {
		t.Fatalf("10,000 allocations took %v, longer than their lifetime %v (%.0f/s)", took, lifetime, float64(users*perUser)/took.Seconds())
	}
	st := s.Stats()
	if st.Allocations != users*perUser || st.Users != users {
		t.Fatalf("after allocating: %+v", st)
	}
	if err := allocate("u0"); code(err) != 486 {
		t.Errorf("101st allocation of u0: %v, want 486", err)
	}
	if err := allocate(fmt.Sprintf("u%d", users)); code(err) != 508 {
		t.Errorf("a 101st user over the total quota: %v, want 508", err)
	}
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	perAlloc := (int64(m1.HeapInuse+m1.StackInuse) - int64(m0.HeapInuse+m0.StackInuse)) / (users * perUser)
	t.Logf("10,000 allocations in %v (%.0f/s); %d bytes of heap+stack per allocation; %d goroutines",
		took.Round(time.Millisecond), float64(users*perUser)/took.Seconds(), perAlloc, runtime.NumGoroutine()-g0)
	if perAlloc > 32<<10 {
		t.Errorf("%d bytes per allocation: more than 32 KiB", perAlloc)
	}

	// Expiry releases everything.
	// Released counts last, after the table and the quota: wait on it.
	deadline := time.Now().Add(lifetime + 10*time.Second)
	for st := s.Stats(); (st.Allocations > 0 || st.Released != st.AllocationsTotal) && time.Now().Before(deadline); st = s.Stats() {
		time.Sleep(100 * time.Millisecond)
	}
	st = s.Stats()
	live, qusers := s.quota.snapshot()
	if st.Allocations != 0 || live != 0 || qusers != 0 || st.Released != st.AllocationsTotal {
		t.Fatalf("after expiry: %+v, quota live %d users %d", st, live, qusers)
	}
	for runtime.NumGoroutine() > g0+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > g0+5 {
		t.Errorf("%d goroutines after expiry, %d before", n, g0)
	}
}

// ownLoopback is a loopback address of this process alone on Linux, where
// all of 127.0.0.0/8 is the loopback (from the PID: unique among running
// processes), so that 10,000 relays never compete for ports with another
// test process's (two turnserver test runs at once each held 10,000 of the
// same 16,000 ports: 508s); elsewhere 127.0.0.1.
func ownLoopback() netip.Addr {
	if runtime.GOOS != "linux" {
		return netip.MustParseAddr("127.0.0.1")
	}
	pid := os.Getpid() // at most 2^22 on Linux
	return netip.AddrFrom4([4]byte{127, byte(64 + pid>>16&63), byte(pid >> 8), byte(pid)})
}
