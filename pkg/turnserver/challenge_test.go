package turnserver

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/ratelimit"
	"github.com/natkit/natkit/pkg/stun"
)

// unauthAllocate is an Allocate without credentials, padded with SOFTWARE
// to at least size bytes.
func unauthAllocate(tid byte, size int) []byte {
	b := stun.NewBuilder(nil, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.MagicCookie, stun.TransactionID{tid, 1})
	b.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})
	if n := size - len(b.Bytes()) - 4; n > 0 {
		b.AddString(stun.AttrSoftware, strings.Repeat(" ", n))
	}
	return b.Bytes()
}

// exchange sends req from pc to the server and returns the answer, or nil
// when none comes within wait.
func exchange(t *testing.T, pc net.PacketConn, to net.Addr, req []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := pc.WriteTo(req, to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	pc.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return nil
		}
		// Only the answer to req counts: a datagram of another kind —
		// a late answer to an earlier request, or one a server of another
		// test process sent to this port's last owner — is passed over
		// (6 "answers" for a budget of 3, 1 run in ~100 with four test
		// processes at once).
		if n >= 20 && len(req) >= 20 && bytes.Equal(buf[8:20], req[8:20]) {
			return buf[:n]
		}
	}
}

// TestChallengeLen: challengeLen is the size of pion's 401, which decides
// whether a 401 may go out without budget.
func TestChallengeLen(t *testing.T) {
	leaktest.Check(t)
	for _, realm := range []string{"natkit", "a", strings.Repeat("r", 33)} {
		s := startServer(t, func(c *Config) { c.Realm = realm })
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		a := exchange(t, pc, net.UDPAddrFromAddrPort(s.addr("udp")), unauthAllocate(1, 0), 2*time.Second)
		if a == nil {
			t.Fatalf("realm %q: no 401", realm)
		}
		if len(a) != challengeLen(realm) {
			t.Errorf("realm %q: pion's 401 is %d bytes, challengeLen says %d", realm, len(a), challengeLen(realm))
		}
	}
}

// TestChallengeNoLargerThanRequest: with the budget spent, a 401 still
// answers a request at least as large (no amplification), never a smaller
// one; over TCP the budget does not apply.
func TestChallengeNoLargerThanRequest(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) { c.ChallengeRate = 0.001; c.ChallengeBurst = 1 })
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(s.addr("udp"))
	full := challengeLen(DefaultRealm)
	for i, tc := range []struct {
		name     string
		size     int
		answered bool
	}{
		{"small, out of the budget", 0, true},
		{"small, budget spent", 0, false},
		{"one byte short", full - 4, false},
		{"as large as the 401", full, true},
		{"larger", full + 100, true},
		{"small again", 0, false},
	} {
		req := unauthAllocate(byte(i), tc.size)
		wait := 2 * time.Second
		if !tc.answered {
			wait = 300 * time.Millisecond
		}
		a := exchange(t, pc, to, req, wait)
		if (a != nil) != tc.answered {
			t.Errorf("%s (%d bytes): answered %v, want %v", tc.name, len(req), a != nil, tc.answered)
		}
		if a != nil && i > 0 && len(a) > len(req) {
			t.Errorf("%s: a %d-byte answer to %d bytes beyond the budget", tc.name, len(a), len(req))
		}
	}
	// TCP: the source is not forged.
	c := dial(t, s, "tcp", "alice", "wonderland")
	if _, err := c.Allocate(ctxT(t)); err != nil {
		t.Errorf("over TCP with the budget spent: %v", err)
	}
}

// TestChallengeFloodForgedFromClient: a flood of unauthenticated Allocates
// forged from the client's IP (many source ports, as fast as the machine
// lets it) drains the 401 budget of 127.0.0.1; a real client on 127.0.0.1
// allocates 17 times meanwhile, and every try succeeds, while the flood
// gets no more 401s than the budget.
func TestChallengeFloodForgedFromClient(t *testing.T) {
	leaktest.Check(t)
	const rate, burst = 5, 5
	s := startServer(t, func(c *Config) { c.ChallengeRate = rate; c.ChallengeBurst = burst })
	to := net.UDPAddrFromAddrPort(s.addr("udp"))
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent, answered atomic.Int64
	for w := 0; w < 4; w++ {
		pcs := make([]net.PacketConn, 8) // a source port each
		for i := range pcs {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			pcs[i] = pc
			wg.Add(1)
			go func() { // the forged source would never see these
				defer wg.Done()
				buf := make([]byte, 2048)
				for {
					pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					if _, _, err := pc.ReadFrom(buf); err == nil {
						answered.Add(1)
					} else if ctx.Err() != nil {
						return
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				pcs[i%len(pcs)].WriteTo(unauthAllocate(byte(i), 0), to)
				sent.Add(1)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	start := time.Now()
	// Each try comes after more flood datagrams, however slowly a loaded
	// machine lets the flood run: the budget stays spent.
	floodOn := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for sent.Load() < n {
			if time.Now().After(deadline) {
				stop()
				wg.Wait()
				t.Fatalf("the flood sent only %d of %d datagrams in 10 s", sent.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	floodOn(50) // the budget is spent
	for i := 0; i < 17; i++ {
		floodOn(sent.Load() + 10)
		c := dial(t, s, "udp", "alice", "wonderland")
		tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := c.Allocate(tctx)
		cancel()
		if err != nil {
			stop()
			wg.Wait()
			t.Fatalf("try %d during the flood (%d datagrams sent): %v", i+1, sent.Load(), err)
		}
		if err := c.Release(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	stop()
	wg.Wait()
	elapsed := time.Since(start)
	st := s.Stats()
	t.Logf("flood: %d sent, %d answered in %v; %+v", sent.Load(), answered.Load(), elapsed, st)
	if max := int64(burst + rate*elapsed.Seconds() + 1); answered.Load() > max {
		t.Errorf("the flood got %d 401s, more than the budget's %d", answered.Load(), max)
	}
	if st.ChallengesDropped == 0 {
		t.Errorf("the flood was never limited: %+v", st)
	}
}

// TestChallengeSharedBudget: a 401 larger than its request also draws from
// the process's shared answer budget (natkit serve's STUN, rendezvous and
// TURN answers to one source), and one that is not larger does not.
func TestChallengeSharedBudget(t *testing.T) {
	leaktest.Check(t)
	const burst = 3
	shared := ratelimit.New(0.001, burst)
	s := startServer(t, func(c *Config) { c.ChallengeRate = 1e6; c.ChallengeBurst = 1e6; c.AnswerLimiter = shared })
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(s.addr("udp"))
	small := 0
	for i := range 10 {
		if exchange(t, pc, to, unauthAllocate(byte(i), 0), 300*time.Millisecond) != nil {
			small++
		}
	}
	if small != burst {
		t.Errorf("%d of 10 small requests got a 401, want the shared burst of %d", small, burst)
	}
	// The shared budget is spent; a request as large as the 401 still gets it.
	if exchange(t, pc, to, unauthAllocate(99, s.challengeLen), 2*time.Second) == nil {
		t.Error("a request as large as its 401 got none")
	}
}
