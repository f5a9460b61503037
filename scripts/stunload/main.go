// Command stunload drives a STUN server with Binding requests over UDP and
// reports responses per second and latency. It is the load generator of
// scripts/bench-stun.sh, meant for loopback only.
//
// Each of -senders goroutines owns a connected UDP socket and keeps up to
// -window requests outstanding, sending and receiving in batches with
// sendmmsg/recvmmsg (pkg/udpbatch) so that the generator is not the bottleneck. A request's
// transaction ID carries its sender and sequence number, so latency is
// measured per request; a request unanswered after -timeout counts as lost.
// With -rate the senders together send at most that many requests a second
// (for measuring a server's CPU time at a fixed load).
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/udpbatch"
)

func main() {
	target := flag.String("target", "127.0.0.1:3478", "STUN server `IP:PORT` (loopback only)")
	senders := flag.Int("senders", 2, "sender goroutines, one UDP socket each")
	window := flag.Int("window", 128, "outstanding requests per sender")
	batch := flag.Int("batch", 32, "datagrams per sendmmsg/recvmmsg")
	duration := flag.Duration("duration", 5*time.Second, "how long to send")
	timeout := flag.Duration("timeout", 500*time.Millisecond, "a request unanswered this long is lost")
	label := flag.String("label", "", "name printed with the result")
	rate := flag.Float64("rate", 0, "requests a second, all senders together (0: as many as the window allows)")
	flag.Parse()

	ap, err := netip.ParseAddrPort(*target)
	if err != nil || !ap.Addr().IsLoopback() {
		fmt.Fprintf(os.Stderr, "stunload: -target %q must be a loopback IP:PORT\n", *target)
		os.Exit(2)
	}
	if *senders < 1 || *window < 1 || *batch < 1 || *batch > 1024 || *duration <= 0 || *rate < 0 {
		fmt.Fprintln(os.Stderr, "stunload: -senders, -window, -batch and -duration must be positive (batch ≤ 1024), -rate not negative")
		os.Exit(2)
	}
	res := make([]*result, *senders)
	var wg sync.WaitGroup
	startAt := time.Now()
	stopAt := startAt.Add(*duration)
	for i := range res {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			fmt.Fprintln(os.Stderr, "stunload:", err)
			os.Exit(1)
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		s := newSender(c, uint32(i), *window, *batch, *timeout, *rate/float64(*senders))
		res[i] = &s.res
		wg.Add(1)
		go func() { defer wg.Done(); defer c.Close(); s.run(startAt, stopAt) }()
	}
	wg.Wait()
	elapsed := time.Since(startAt)
	var total result
	for _, r := range res {
		total.add(r)
	}
	rps := float64(total.received) / elapsed.Seconds()
	p50, p99 := total.percentile(0.50), total.percentile(0.99)
	fmt.Printf("label=%s target=%s senders=%d window=%d sent=%d responses=%d lost=%d bad=%d seconds=%.2f rps=%.0f p50_us=%d p99_us=%d\n",
		*label, ap, *senders, *window, total.sent, total.received, total.lost, total.bad, elapsed.Seconds(), rps, p50, p99)
}

// histogram buckets are 1 µs wide up to maxLatency; slower go in the last.
const maxLatencyUS = 200_000

type result struct {
	sent, received, lost, bad uint64
	hist                      []uint64
}

func (r *result) add(o *result) {
	r.sent += o.sent
	r.received += o.received
	r.lost += o.lost
	r.bad += o.bad
	if r.hist == nil {
		r.hist = make([]uint64, maxLatencyUS+1)
	}
	for i, v := range o.hist {
		r.hist[i] += v
	}
}

func (r *result) percentile(p float64) int {
	want := uint64(p * float64(r.received))
	var n uint64
	for i, v := range r.hist {
		n += v
		if n > want {
			return i
		}
	}
	return maxLatencyUS
}

// slot is one outstanding request.
type slot struct {
	sent  time.Time
	acked bool
}

type sender struct {
	c       *net.UDPConn
	id      uint32
	window  int
	batch   int
	timeout time.Duration
	rate    float64 // requests a second; 0: no pacing
	conn    *udpbatch.Conn
	in, out *udpbatch.Batch // out: the requests, 20 bytes each, to the target
	ring    []slot
	next    uint64 // next sequence number
	oldest  uint64 // oldest sequence number not yet settled
	pending int
	res     result
}

func newSender(c *net.UDPConn, id uint32, window, batch int, timeout time.Duration, rate float64) *sender {
	out := udpbatch.NewBatch(batch, 20, 0)
	to := c.RemoteAddr().(*net.UDPAddr).AddrPort()
	for i := range out.Msgs {
		out.Msgs[i].N, out.Msgs[i].Addr = 20, to
	}
	size := 1
	for size < 4*window {
		size <<= 1
	}
	return &sender{c: c, id: id, window: window, batch: batch, timeout: timeout, rate: rate,
		conn: udpbatch.NewConn(c), in: udpbatch.NewBatch(batch, 1500, 0), out: out,
		ring: make([]slot, size), res: result{hist: make([]uint64, maxLatencyUS+1)}}
}

func (s *sender) run(startAt, stopAt time.Time) {
	mask := uint64(len(s.ring) - 1)
	for {
		now := time.Now()
		sending := now.Before(stopAt)
		if !sending && s.pending == 0 {
			return
		}
		if now.After(stopAt.Add(s.timeout)) {
			s.res.lost += uint64(s.pending)
			return
		}
		// Settle the oldest requests: answered or timed out.
		for s.oldest < s.next {
			sl := &s.ring[s.oldest&mask]
			if !sl.acked {
				if now.Sub(sl.sent) < s.timeout {
					break
				}
				s.res.lost++
				s.pending--
				sl.acked = true
			}
			s.oldest++
		}
		// Fill the window.
		if sending {
			n := min(s.window-s.pending, s.batch, len(s.ring)-int(s.next-s.oldest))
			if s.rate > 0 {
				n = min(n, int(int64(now.Sub(startAt).Seconds()*s.rate)-int64(s.next)))
			}
			if n > 0 {
				for i := 0; i < n; i++ {
					seq := s.next + uint64(i)
					buildRequest(s.out.Msgs[i].Buf, s.id, seq)
					s.ring[seq&mask] = slot{sent: now}
				}
				_ = s.c.SetWriteDeadline(now.Add(s.timeout))
				failed, err := s.conn.Write(s.out, s.out.Msgs[:n])
				sent := n - failed
				s.next += uint64(sent)
				s.pending += sent
				s.res.sent += uint64(sent)
				if failed > 0 || err != nil {
					// Refused (no server yet: ICMP port unreachable) or closed.
					time.Sleep(100 * time.Microsecond)
				}
			}
		}
		// Receive what has come.
		wait := 5 * time.Millisecond
		if s.rate > 0 {
			wait = time.Millisecond // paced: come back soon to send the next ones
		}
		_ = s.c.SetReadDeadline(time.Now().Add(wait))
		n, _ := s.conn.ReadInto(s.in)
		now = time.Now()
		for i := 0; i < n; i++ {
			b := s.in.Msgs[i].Data()
			if len(b) < 20 || binary.BigEndian.Uint16(b[0:2]) != uint16(stun.BindingSuccess) ||
				binary.BigEndian.Uint32(b[8:12]) != s.id {
				s.res.bad++
				continue
			}
			seq := binary.BigEndian.Uint64(b[12:20])
			if seq < s.oldest || seq >= s.next {
				continue // settled already (late answer)
			}
			sl := &s.ring[seq&mask]
			if sl.acked {
				continue
			}
			sl.acked = true
			s.pending--
			s.res.received++
			us := now.Sub(sl.sent).Microseconds()
			s.res.hist[min(us, maxLatencyUS)]++
		}
	}
}

// buildRequest writes a 20-byte RFC 5389 Binding request whose transaction
// ID is the sender ID and the sequence number.
func buildRequest(b []byte, id uint32, seq uint64) {
	binary.BigEndian.PutUint16(b[0:2], uint16(stun.BindingRequest))
	binary.BigEndian.PutUint16(b[2:4], 0)
	binary.BigEndian.PutUint32(b[4:8], stun.MagicCookie)
	binary.BigEndian.PutUint32(b[8:12], id)
	binary.BigEndian.PutUint64(b[12:20], seq)
}
