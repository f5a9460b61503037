package connlimit

import (
	"net/netip"
	"sync"
	"testing"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"IPv4 whole", "192.0.2.7", "192.0.2.7"},
		{"IPv4-mapped IPv6 as IPv4", "::ffff:192.0.2.7", "192.0.2.7"},
		{"IPv6 by its /64", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"},
		{"IPv6 zone dropped", "fe80::1%eth0", "fe80::"},
		{"IPv6 loopback", "::1", "::"},
		{"IPv4 loopback", "127.0.0.2", "127.0.0.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Key(netip.MustParseAddr(tc.in)); got != netip.MustParseAddr(tc.want) {
				t.Errorf("Key(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
	if got := Key(netip.Addr{}); got != (netip.Addr{}) {
		t.Errorf("Key(invalid) = %v, want the zero Addr", got)
	}
}

// TestAcquire runs a sequence of acquires (+addr) and releases (-addr, the
// oldest open slot of that addr) and checks each outcome and the counts.
func TestAcquire(t *testing.T) {
	type step struct {
		op   byte // '+' acquire, '-' release
		addr string
		ok   bool // for '+': admitted
	}
	for _, tc := range []struct {
		name  string
		max   int
		steps []step
		// counts after the steps, by address asked (sources counted once).
		counts  map[string]int
		sources int
	}{
		{"cap per IPv4 address", 2, []step{
			{'+', "10.0.0.1", true}, {'+', "10.0.0.1", true}, {'+', "10.0.0.1", false},
			{'+', "10.0.0.2", true},
		}, map[string]int{"10.0.0.1": 2, "10.0.0.2": 1}, 2},
		{"a release frees a slot", 1, []step{
			{'+', "10.0.0.1", true}, {'+', "10.0.0.1", false}, {'-', "10.0.0.1", true}, {'+', "10.0.0.1", true},
		}, map[string]int{"10.0.0.1": 1}, 1},
		{"IPv4-mapped shares the IPv4 address's slots", 2, []step{
			{'+', "192.0.2.1", true}, {'+', "::ffff:192.0.2.1", true}, {'+', "192.0.2.1", false},
		}, map[string]int{"192.0.2.1": 2, "::ffff:192.0.2.1": 2}, 1},
		{"one IPv6 /64 is one source", 2, []step{
			{'+', "2001:db8::1", true}, {'+', "2001:db8::2", true}, {'+', "2001:db8::ffff:3", false},
			{'+', "2001:db8:0:1::1", true},
		}, map[string]int{"2001:db8::9": 2, "2001:db8:0:1::": 1}, 2},
		{"entries deleted at zero", 3, []step{
			{'+', "10.0.0.1", true}, {'+', "2001:db8::1", true}, {'-', "10.0.0.1", true}, {'-', "2001:db8::1", true},
		}, map[string]int{"10.0.0.1": 0, "2001:db8::1": 0}, 0},
		{"no cap", 0, []step{
			{'+', "10.0.0.1", true}, {'+', "10.0.0.1", true}, {'+', "10.0.0.1", true},
		}, map[string]int{"10.0.0.1": 0}, 0},
		{"negative is no cap", -1, []step{
			{'+', "10.0.0.1", true}, {'+', "10.0.0.1", true},
		}, map[string]int{"10.0.0.1": 0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(tc.max)
			open := map[netip.Addr][]func(){}
			for i, s := range tc.steps {
				a := netip.MustParseAddr(s.addr)
				switch s.op {
				case '+':
					rel, ok := c.Acquire(a)
					if ok != s.ok {
						t.Fatalf("step %d: Acquire(%s) ok = %v, want %v", i, a, ok, s.ok)
					}
					if ok {
						open[a] = append(open[a], rel)
					} else {
						rel() // a no-op: must not free anyone's slot
					}
				case '-':
					if len(open[a]) == 0 {
						t.Fatalf("step %d: nothing open for %s", i, a)
					}
					open[a][0]()
					open[a] = open[a][1:]
				}
			}
			for a, want := range tc.counts {
				if got := c.Count(netip.MustParseAddr(a)); got != want {
					t.Errorf("Count(%s) = %d, want %d", a, got, want)
				}
			}
			if got := c.Sources(); got != tc.sources {
				t.Errorf("Sources() = %d, want %d", got, tc.sources)
			}
		})
	}
}

func TestReleaseTwice(t *testing.T) {
	c := New(1)
	a := netip.MustParseAddr("10.0.0.1")
	rel, ok := c.Acquire(a)
	if !ok {
		t.Fatal("first acquire refused")
	}
	rel2, ok := c.Acquire(a)
	if ok {
		t.Fatal("second acquire admitted over a cap of 1")
	}
	rel2()
	if c.Count(a) != 1 {
		t.Fatalf("a refused acquire's release freed a slot: count %d", c.Count(a))
	}
	rel()
	rel()
	if c.Count(a) != 0 || c.Sources() != 0 {
		t.Fatalf("after release twice: count %d, sources %d", c.Count(a), c.Sources())
	}
	// The second release must not have taken a slot another connection
	// holds now.
	rel3, ok := c.Acquire(a)
	if !ok {
		t.Fatal("acquire after release refused")
	}
	rel()
	if c.Count(a) != 1 {
		t.Errorf("a stale release freed another connection's slot: count %d", c.Count(a))
	}
	rel3()
}

func TestNil(t *testing.T) {
	var c *Counter
	rel, ok := c.Acquire(netip.MustParseAddr("10.0.0.1"))
	if !ok {
		t.Fatal("nil Counter refused")
	}
	rel()
	if c.Max() != 0 || c.Count(netip.Addr{}) != 0 || c.Sources() != 0 {
		t.Error("nil Counter reports something")
	}
}

// TestConcurrent: goroutines racing for one source's slots never get more
// than the cap between them, and the table is empty when all are released.
func TestConcurrent(t *testing.T) {
	const limit, workers, rounds = 4, 32, 200
	c := New(limit)
	a := netip.MustParseAddr("2001:db8::1")
	var mu sync.Mutex
	held, peak := 0, 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker asks from its own address in the same /64.
			me := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(w)})
			for range rounds {
				rel, ok := c.Acquire(me)
				if !ok {
					continue
				}
				mu.Lock()
				held++
				peak = max(peak, held)
				mu.Unlock()
				mu.Lock()
				held--
				mu.Unlock()
				rel()
			}
		}()
	}
	wg.Wait()
	if peak > limit || peak == 0 {
		t.Errorf("peak %d held at once, want 1..%d", peak, limit)
	}
	if c.Count(a) != 0 || c.Sources() != 0 {
		t.Errorf("after all released: count %d, sources %d", c.Count(a), c.Sources())
	}
}
