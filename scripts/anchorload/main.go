// Command anchorload measures pkg/pbx/anchor under the load of issue 11:
// -calls concurrent G.711 calls, each phone sending -pps packets a second
// of -size bytes (20 ms frames: 50 pps, 172 bytes) through the relay for
// -duration, both ways. It is the load generator of scripts/bench-anchor.sh
// and runs the relay in its own process, on loopback only.
//
// Every phone is a UDP socket of its own. Senders keep an absolute schedule
// with the phones spread evenly over each packet interval, as independent
// phones would be; each packet carries its send time, so the receiving
// phone measures the one-way latency. Phones latch the relay (they send
// before the measurement starts) and then send from the ports they latched.
// With -direct the phones send to each other without the relay: the
// baseline the relay's added latency is measured against.
//
// It prints one line of key=value figures: pps (packets relayed a second,
// both directions), loss_pct, p50_us/p99_us/max_us (one-way latency),
// allocs_per_pkt (all of the process's allocations during the run over
// the packets relayed: the generator allocates nothing per packet either),
// heap_per_call and stack_per_call (bytes the relay took per call: heap and
// goroutine stacks after the calls were opened and latched) and cpu_pct
// (the whole process, generator included), and relay_p50_us..relay_max_us:
// how long packets spent in the relay, from the kernel's receive time stamp
// to the end of the send (Anchor.Latency) — the relay's added latency,
// without the generator's own delays.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/natkit/natkit/pkg/pbx/anchor"
)

const buckets = 20000 // 1 µs each; beyond is the last

var (
	hist     [buckets + 1]atomic.Uint64
	received atomic.Uint64
	start    = time.Now()
)

type phone struct {
	conn *net.UDPConn
	to   netip.AddrPort // the relay's leg, or the other phone with -direct
	id   uint32
}

func main() {
	calls := flag.Int("calls", 500, "concurrent calls")
	pps := flag.Int("pps", 50, "packets a second each phone sends")
	size := flag.Int("size", 172, "bytes a packet (12 RTP + 160 G.711)")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	minPort := flag.Int("min-port", 20000, "first media port of the relay")
	senders := flag.Int("senders", 4, "sender goroutines")
	direct := flag.Bool("direct", false, "phones send to each other, without the relay (the baseline)")
	label := flag.String("label", "relay", "name printed with the result")
	serve := flag.String("serve", "", "run only the relay: write its calls' ports to this `file` (a line \"A B\" a call) and relay until SIGTERM, then print its own figures")
	use := flag.String("use", "", "run only the phones, against the relay whose ports -serve wrote to this `file`")
	traceFile := flag.String("trace", "", "write a runtime trace of the measured run to this `file`")
	stalls := flag.Duration("stalls", 0, "only measure the machine: spin on one thread this long and count the gaps between clock reads (time the CPU was taken away)")
	wakes := flag.Duration("wakes", 0, "only measure the machine: for this long, wake a thread blocked in recvmsg(2) on CPU 0 with a packet from CPU 1 about every millisecond, and time each wake-up from the kernel's receive stamp")
	flag.Parse()
	if *stalls > 0 {
		measureStalls(*stalls)
		return
	}
	if *wakes > 0 {
		measureWakes(*wakes)
		return
	}
	if *serve != "" {
		serveOnly(*serve, *calls, *minPort)
		return
	}
	if *size < 28 || *size > 1400 || *calls < 1 || *pps < 1 || *senders < 1 {
		fmt.Fprintln(os.Stderr, "anchorload: -size 28-1400, -calls, -pps and -senders positive")
		os.Exit(2)
	}
	lo := netip.MustParseAddr("127.0.0.1")

	var a *anchor.Anchor
	var cs []*anchor.Call
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	var remote [][2]uint16
	if *use != "" {
		remote = readPorts(*use)
		*calls = len(remote)
	}
	if !*direct && *use == "" {
		var err error
		a, err = anchor.New(anchor.Config{IP: lo, MinPort: uint16(*minPort), MaxPort: uint16(*minPort + 4**calls + 99)})
		check(err)
		defer a.Close()
		for i := 0; i < *calls; i++ {
			c, err := a.NewCall()
			check(err)
			cs = append(cs, c)
		}
	}
	phones := make([]*phone, 2**calls)
	for i := range phones {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		check(err)
		c.SetReadBuffer(1 << 20)
		phones[i] = &phone{conn: c, id: uint32(i)}
	}
	for i := 0; i < *calls; i++ {
		pa, pb := phones[2*i], phones[2*i+1]
		if *direct {
			pa.to, pb.to = addrOf(pb.conn), addrOf(pa.conn)
			continue
		}
		if *use != "" {
			pa.to, pb.to = netip.AddrPortFrom(lo, remote[i][0]), netip.AddrPortFrom(lo, remote[i][1])
			continue
		}
		pa.to = netip.AddrPortFrom(lo, cs[i].Leg(anchor.A).Port())
		pb.to = netip.AddrPortFrom(lo, cs[i].Leg(anchor.B).Port())
		// The SDP names a port the phone does not send from, as behind a NAT.
		cs[i].Leg(anchor.A).Expect(netip.AddrPortFrom(lo, 9), netip.AddrPort{})
		cs[i].Leg(anchor.B).Expect(netip.AddrPortFrom(lo, 9), netip.AddrPort{})
	}
	var wg sync.WaitGroup
	for _, p := range phones {
		wg.Add(1)
		go receive(p, &wg)
	}
	// Latch: each phone sends until its leg has latched.
	warm := make([]byte, *size)
	warm[0] = 0x80
	for k := 0; *use != "" && k < 10; k++ { // latch a relay in another process
		for _, p := range phones {
			p.conn.WriteToUDPAddrPort(warm, p.to)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for !*direct && *use == "" {
		left := 0
		for i, c := range cs {
			st := c.Stats()
			if st.A.Latched == "" {
				phones[2*i].conn.WriteToUDPAddrPort(warm, phones[2*i].to)
				left++
			}
			if st.B.Latched == "" {
				phones[2*i+1].conn.WriteToUDPAddrPort(warm, phones[2*i+1].to)
				left++
			}
		}
		if left == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !*direct && *use == "" {
		runtime.GC()
		runtime.ReadMemStats(&m1)
	}
	time.Sleep(200 * time.Millisecond)
	received.Store(0)
	for i := range hist {
		hist[i].Store(0)
	}
	relayedBefore := relayed(cs)
	if a != nil {
		a.ResetLatency()
	}

	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		check(err)
		check(trace.Start(f))
		defer f.Close()
	}
	t0 := time.Now()
	interval := time.Second / time.Duration(*pps)
	ticks := int(*duration / interval)
	var sent atomic.Uint64
	var swg sync.WaitGroup
	for s := 0; s < *senders; s++ {
		swg.Add(1)
		go func(s int) {
			defer swg.Done()
			var mine []*phone
			for i := s; i < len(phones); i += *senders {
				mine = append(mine, phones[i])
			}
			send(mine, len(phones), s, *senders, t0, interval, ticks, *size, &sent)
		}(s)
	}
	swg.Wait()
	elapsed := time.Since(t0)
	if *traceFile != "" {
		trace.Stop()
	}
	time.Sleep(500 * time.Millisecond) // the last packets arrive
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	runtime.ReadMemStats(&ms1)
	got := received.Load()
	relayedN := relayed(cs) - relayedBefore

	for _, p := range phones {
		p.conn.Close()
	}
	wg.Wait()

	total := sent.Load()
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * 100
	fmt.Printf("anchorload %s: calls=%d pps=%.0f sent=%d received=%d loss_pct=%.4f p50_us=%.0f p90_us=%.0f p95_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f cpu_pct=%.0f",
		*label, *calls, float64(relayedN)/elapsed.Seconds(), total, got, 100*float64(total-min(got, total))/float64(total),
		pct(0.50), pct(0.90), pct(0.95), pct(0.99), pct(0.999), pct(1), float64(cpu)/float64(elapsed))
	if *direct || *use != "" {
		fmt.Printf(" pps_sent=%.0f", float64(total)/elapsed.Seconds())
	} else {
		l := a.Latency()
		fmt.Printf(" relay_p50_us=%.0f relay_p99_us=%.0f relay_p999_us=%.0f relay_max_us=%.0f", 1000*l.P50ms, 1000*l.P99ms, 1000*l.P999ms, 1000*l.Maxms)
		fmt.Printf(" allocs_per_pkt=%.4f heap_per_call=%d stack_per_call=%d",
			float64(ms1.Mallocs-ms0.Mallocs)/float64(max(relayedN, 1)),
			(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/int64(*calls), (int64(m1.StackInuse)-int64(m0.StackInuse))/int64(*calls))
	}
	fmt.Println()
}

// send sends for phones[i] (every senders-th phone from s) on a schedule:
// phone i's packets at t0 + k*interval + offset, offsets spread over the
// interval by the phone's index among n.
func send(mine []*phone, n, s, senders int, t0 time.Time, interval time.Duration, ticks, size int, sent *atomic.Uint64) {
	pkts := make([][]byte, len(mine))
	for j, p := range mine {
		b := make([]byte, size)
		b[0], b[1] = 0x80, 0
		binary.BigEndian.PutUint32(b[8:], p.id)
		pkts[j] = b
	}
	offset := func(j int) time.Duration { return interval * time.Duration(j*senders+s) / time.Duration(n) }
	for k := 0; k < ticks; k++ {
		base := t0.Add(time.Duration(k) * interval)
		for j, p := range mine {
			at := base.Add(offset(j))
			if d := time.Until(at); d > 50*time.Microsecond {
				time.Sleep(d)
			}
			b := pkts[j]
			binary.BigEndian.PutUint16(b[2:], uint16(k))
			binary.BigEndian.PutUint32(b[4:], uint32(k*160))
			binary.BigEndian.PutUint64(b[12:], uint64(time.Since(start)))
			if _, err := p.conn.WriteToUDPAddrPort(b, p.to); err == nil {
				sent.Add(1)
			}
		}
	}
}

func receive(p *phone, wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < 20 {
			continue
		}
		ts := binary.BigEndian.Uint64(buf[12:])
		if ts == 0 {
			continue // a latching packet
		}
		lat := (time.Since(start) - time.Duration(ts)) / time.Microsecond
		hist[min(int(lat), buckets)].Add(1)
		received.Add(1)
	}
}

// pct returns the q quantile of the latency histogram in µs.
func pct(q float64) float64 {
	var total uint64
	for i := range hist {
		total += hist[i].Load()
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	if want == 0 {
		want = 1
	}
	var acc uint64
	for i := range hist {
		acc += hist[i].Load()
		if acc >= want {
			return float64(i)
		}
	}
	return buckets
}

func relayed(cs []*anchor.Call) uint64 {
	var n uint64
	for _, c := range cs {
		st := c.Stats()
		n += st.A.PacketsOut + st.B.PacketsOut
	}
	return n
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "anchorload:", err)
		os.Exit(1)
	}
}

// serveOnly runs the relay alone: it opens calls, writes their ports to
// file, and on SIGTERM prints what it relayed since every leg latched,
// with its own CPU time, allocations and memory per call.
func serveOnly(file string, calls, minPort int) {
	lo := netip.MustParseAddr("127.0.0.1")
	var m0, m1, ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	a, err := anchor.New(anchor.Config{IP: lo, MinPort: uint16(minPort), MaxPort: uint16(minPort + 4*calls + 99)})
	check(err)
	defer a.Close()
	var cs []*anchor.Call
	var out strings.Builder
	for i := 0; i < calls; i++ {
		c, err := a.NewCall()
		check(err)
		cs = append(cs, c)
		c.Leg(anchor.A).Expect(netip.AddrPortFrom(lo, 9), netip.AddrPort{})
		c.Leg(anchor.B).Expect(netip.AddrPortFrom(lo, 9), netip.AddrPort{})
		fmt.Fprintf(&out, "%d %d\n", c.Leg(anchor.A).Port(), c.Leg(anchor.B).Port())
	}
	check(os.WriteFile(file+".tmp", []byte(out.String()), 0o644))
	check(os.Rename(file+".tmp", file))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for latched := false; !latched; {
		select {
		case <-sig:
			fmt.Fprintln(os.Stderr, "anchorload: stopped before every leg latched")
			os.Exit(1)
		case <-time.After(20 * time.Millisecond):
		}
		latched = true
		for _, c := range cs {
			st := c.Stats()
			latched = latched && st.A.Latched != "" && st.B.Latched != ""
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.ReadMemStats(&ms0)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	n0, t0 := relayed(cs), time.Now()
	a.ResetLatency()
	<-sig
	n, elapsed := relayed(cs)-n0, time.Since(t0)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	runtime.ReadMemStats(&ms1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * 100
	l := a.Latency()
	fmt.Printf("anchorload relay process: calls=%d relayed=%d relay_p50_us=%.0f relay_p99_us=%.0f relay_p999_us=%.0f relay_max_us=%.0f relay_cpu_pct=%.0f allocs_per_pkt=%.4f heap_per_call=%d stack_per_call=%d (over %.1f s, warm-up and drain included)\n",
		calls, n, 1000*l.P50ms, 1000*l.P99ms, 1000*l.P999ms, 1000*l.Maxms, float64(cpu)/float64(elapsed), float64(ms1.Mallocs-ms0.Mallocs)/float64(max(n, 1)),
		(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/int64(calls), (int64(m1.StackInuse)-int64(m0.StackInuse))/int64(calls), elapsed.Seconds())
}

func readPorts(file string) [][2]uint16 {
	b, err := os.ReadFile(file)
	check(err)
	var out [][2]uint16
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var p [2]uint16
		if _, err := fmt.Sscanf(l, "%d %d", &p[0], &p[1]); err != nil {
			check(fmt.Errorf("%s: %q: %v", file, l, err))
		}
		out = append(out, p)
	}
	return out
}

// measureStalls spins for d and reports how often, and how long, the
// thread did not run: on a virtual machine whose host takes the vCPU away,
// no relay can hold a packet for less than these stalls.
func measureStalls(d time.Duration) {
	runtime.LockOSThread()
	limits := []time.Duration{100 * time.Microsecond, 500 * time.Microsecond, 2 * time.Millisecond, 10 * time.Millisecond}
	counts := make([]int, len(limits))
	var worst, stalled time.Duration
	prev := time.Now()
	end := prev.Add(d)
	for prev.Before(end) {
		now := time.Now()
		g := now.Sub(prev)
		for i := len(limits) - 1; i >= 0; i-- {
			if g > limits[i] {
				counts[i]++
				stalled += g
				break
			}
		}
		worst = max(worst, g)
		prev = now
	}
	fmt.Printf("anchorload stalls: over %v a spinning thread stopped >100us %d times, >500us %d, >2ms %d, >10ms %d; worst %v, %.2f%% of the time stopped\n",
		d, counts[0], counts[1], counts[2], counts[3], worst.Round(time.Microsecond), 100*float64(stalled)/float64(d))
}

// measureWakes times how long a packet waits for a thread that sleeps in
// recvmsg(2) on CPU 0 to wake and take it, from the kernel's receive time
// stamp to the return of the call: no Go scheduler in the way, only the
// kernel and, on a virtual machine, the host waking an idle vCPU. A relay
// that idles between packets (any event-driven one: natkit's, rtpengine's
// userspace path) cannot hold a packet for less. The sender, on CPU 1,
// sends about every millisecond (0.5-1.5 ms, so that the receiver has gone
// to sleep each time).
func measureWakes(d time.Duration) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0) // blocking
	check(err)
	defer unix.Close(fd)
	check(unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	check(unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1))
	check(unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}))
	sa, err := unix.Getsockname(fd)
	check(err)
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
	pin := func(cpu int) {
		runtime.LockOSThread()
		var set unix.CPUSet
		set.Set(cpu % runtime.NumCPU())
		unix.SchedSetaffinity(0, &set)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pin(1)
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		check(err)
		defer c.Close()
		for end := time.Now().Add(d); time.Now().Before(end); {
			time.Sleep(500*time.Microsecond + rand.N(time.Millisecond))
			c.WriteToUDPAddrPort([]byte("wake"), dst)
		}
		c.WriteToUDPAddrPort([]byte("stop"), dst)
	}()
	pin(0)
	var lat []time.Duration
	buf, oob := make([]byte, 64), make([]byte, 128)
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		now := time.Now()
		if err == unix.EINTR {
			continue
		}
		if err != nil || string(buf[:n]) == "stop" {
			break
		}
		if rx := rxStamp(oob[:oobn]); rx != 0 {
			lat = append(lat, time.Duration(now.UnixNano()-rx))
		}
	}
	runtime.UnlockOSThread()
	<-done
	if len(lat) == 0 {
		check(fmt.Errorf("no wake-ups measured"))
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration {
		return lat[min(int(f*float64(len(lat))), len(lat)-1)].Round(time.Microsecond)
	}
	over := 0
	for _, l := range lat {
		if l > time.Millisecond {
			over++
		}
	}
	fmt.Printf("anchorload wakes: %d packets to a thread asleep in recvmsg on CPU 0, kernel stamp to wake-up: p50 %v, p99 %v, p99.9 %v, max %v; %.2f%% over 1 ms\n",
		len(lat), q(0.5), q(0.99), q(0.999), lat[len(lat)-1].Round(time.Microsecond), 100*float64(over)/float64(len(lat)))
}

// rxStamp returns the SCM_TIMESTAMPNS time stamp (Unix ns) in oob, or 0.
func rxStamp(oob []byte) int64 {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			return (*unix.Timespec)(unsafe.Pointer(&m.Data[0])).Nano()
		}
	}
	return 0
}
