package turnclient

import (
	"context"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/render"
)

// BenchOptions configure Bench. Zero values mean the defaults in brackets.
type BenchOptions struct {
	Client      Config
	ServerLabel string
	// Peer is an echo peer the server can reach.
	Peer netip.AddrPort
	// Allocations made and released in the allocation phase [500], by
	// Concurrency clients at a time [16].
	Allocations int
	Concurrency int
	// Clients relaying at once in the relay phase [4], each keeping
	// Window packets in flight [64], for Duration [5s], Size bytes each [100].
	Clients  int
	Window   int
	Duration time.Duration
	Size     int
	// LatencyPackets are sent one at a time, Interval apart, for the
	// latency percentiles [500, 2ms].
	LatencyPackets int
	Interval       time.Duration
}

// BenchReport is `natkit turn bench --json` (schema natkit.turn-bench/v1).
type BenchReport struct {
	render.Envelope
	Server           string  `json:"server"`
	ServerAddress    string  `json:"server_address"`
	Transport        string  `json:"transport"`
	Peer             string  `json:"peer"`
	Allocations      int     `json:"allocations"`
	AllocationErrors int     `json:"allocation_errors"`
	AllocationsPerS  float64 `json:"allocations_per_s"`
	Clients          int     `json:"clients"`
	Sent             int64   `json:"sent"`
	Received         int64   `json:"received"`
	LossPct          float64 `json:"loss_pct"`
	RoundTripsPerS   float64 `json:"round_trips_per_s"`
	// RelayedPacketsPerS counts datagrams through the relay: each round
	// trip crosses it twice (client→peer, peer→client).
	RelayedPacketsPerS float64  `json:"relayed_packets_per_s"`
	ThroughputMbps     float64  `json:"throughput_mbps"`
	LatencyP50Ms       *float64 `json:"latency_p50_ms"`
	LatencyP90Ms       *float64 `json:"latency_p90_ms"`
	LatencyP99Ms       *float64 `json:"latency_p99_ms"`
	LatencyMaxMs       *float64 `json:"latency_max_ms"`
	DurationMs         float64  `json:"duration_ms"`
	Errors             []string `json:"errors"`
}

func (o *BenchOptions) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Allocations, 500)
	def(&o.Concurrency, 16)
	def(&o.Clients, 4)
	def(&o.Window, 64)
	def(&o.Size, 100)
	def(&o.LatencyPackets, 500)
	o.Size = max(o.Size, 16)
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Interval <= 0 {
		o.Interval = 2 * time.Millisecond
	}
}

// Bench measures a TURN server: allocations per second, relayed packets per
// second and throughput with a window of packets in flight per client, and
// round-trip latency through the relay at a light, steady rate.
func Bench(ctx context.Context, o BenchOptions) (BenchReport, error) {
	o.defaults()
	start := time.Now()
	rep := BenchReport{Envelope: render.NewEnvelope("turn-bench"), Server: o.ServerLabel, ServerAddress: o.Client.Server.String(),
		Transport: o.Client.Transport, Peer: o.Peer.String(), Clients: o.Clients, Errors: []string{}}
	if rep.Transport == "" {
		rep.Transport = "udp"
	}
	errs := map[string]bool{}
	var emu sync.Mutex
	note := func(err error) {
		emu.Lock()
		if !errs[err.Error()] && len(errs) < 10 {
			errs[err.Error()] = true
			rep.Errors = append(rep.Errors, err.Error())
		}
		emu.Unlock()
	}

	// Learn realm and nonce once, as a client library would.
	first, err := Dial(ctx, o.Client)
	if err != nil {
		return rep, err
	}
	if _, err := first.Allocate(ctx); err != nil {
		first.Close()
		note(err)
		rep.DurationMs = *ms(time.Since(start))
		return rep, nil
	}
	_ = first.Release(ctx)
	cfg := o.Client
	cfg.Realm, cfg.Nonce = first.Realm(), first.Nonce()
	first.Close()

	// Phase 1: allocations per second.
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	t0 := time.Now()
	for w := 0; w < o.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				c, err := Dial(ctx, cfg)
				if err != nil {
					failed.Add(1)
					note(err)
					continue
				}
				if _, err := c.Allocate(ctx); err != nil {
					failed.Add(1)
					note(err)
				} else {
					done.Add(1)
					_ = c.Release(ctx)
				}
				c.Close()
			}
		}()
	}
	for i := 0; i < o.Allocations && ctx.Err() == nil; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	el := time.Since(t0)
	rep.Allocations, rep.AllocationErrors = int(done.Load()), int(failed.Load())
	rep.AllocationsPerS = round1(float64(done.Load()) / el.Seconds())

	// Phase 2: relayed packets per second.
	var clients []*Client
	var chans []uint16
	for i := 0; i < o.Clients; i++ {
		c, err := Dial(ctx, cfg)
		if err != nil {
			note(err)
			continue
		}
		defer c.Close()
		if _, err := c.Allocate(ctx); err != nil {
			note(err)
			continue
		}
		ch, err := c.ChannelBind(ctx, 0, o.Peer)
		if err != nil {
			note(err)
			continue
		}
		clients = append(clients, c)
		chans = append(chans, ch)
	}
	if len(clients) == 0 {
		rep.DurationMs = *ms(time.Since(start))
		return rep, nil
	}
	var sent, recv atomic.Int64
	rctx, cancel := context.WithTimeout(ctx, o.Duration)
	t1 := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func(c *Client, ch uint16) {
			defer wg.Done()
			payload := make([]byte, o.Size)
			buf := make([]byte, 0, o.Size+8)
			inflight := 0
			send := func() {
				if c.SendChannelBuf(buf, ch, payload) == nil {
					sent.Add(1)
					inflight++
				}
			}
			for inflight < o.Window {
				send()
			}
			timer := time.NewTimer(200 * time.Millisecond)
			defer timer.Stop()
			for rctx.Err() == nil {
				select {
				case <-c.Packets():
					recv.Add(1)
					inflight--
					send()
				case <-timer.C:
					// Losses shrink the window: refill it.
					inflight = 0
					for inflight < o.Window {
						send()
					}
				case <-rctx.Done():
				}
				if !timer.Stop() {
					select {
					case <-timer.C:
					default:
					}
				}
				timer.Reset(200 * time.Millisecond)
			}
		}(c, chans[i])
	}
	wg.Wait()
	el = time.Since(t1)
	cancel()
	rep.Sent, rep.Received = sent.Load(), recv.Load()
	if rep.Sent > 0 {
		rep.LossPct = round1(math.Max(0, float64(rep.Sent-rep.Received)/float64(rep.Sent)*100))
	}
	rep.RoundTripsPerS = round1(float64(rep.Received) / el.Seconds())
	rep.RelayedPacketsPerS = round1(2 * float64(rep.Received) / el.Seconds())
	rep.ThroughputMbps = round1(2 * float64(rep.Received) * float64(o.Size) * 8 / el.Seconds() / 1e6)

	// Phase 3: latency at a steady light rate, on the first client.
	time.Sleep(100 * time.Millisecond)
	c, ch := clients[0], chans[0]
	for len(c.Packets()) > 0 {
		<-c.Packets()
	}
	var lat []time.Duration
	payload := make([]byte, o.Size)
	binary.BigEndian.PutUint64(payload[0:8], 0x6c6174656e637921)
	for i := 0; i < o.LatencyPackets && ctx.Err() == nil; i++ {
		binary.BigEndian.PutUint64(payload[8:16], uint64(i))
		t := time.Now()
		if c.SendChannel(ch, payload) != nil {
			continue
		}
		deadline := time.NewTimer(time.Second)
	wait:
		for {
			select {
			case p := <-c.Packets():
				if len(p.Data) >= 16 && binary.BigEndian.Uint64(p.Data[8:16]) == uint64(i) &&
					binary.BigEndian.Uint64(p.Data[0:8]) == 0x6c6174656e637921 {
					lat = append(lat, p.At.Sub(t))
					break wait
				}
			case <-deadline.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		deadline.Stop()
		time.Sleep(o.Interval)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		q := func(f float64) *float64 { return ms(lat[min(len(lat)-1, int(f*float64(len(lat))))]) }
		rep.LatencyP50Ms, rep.LatencyP90Ms, rep.LatencyP99Ms, rep.LatencyMaxMs = q(0.5), q(0.9), q(0.99), ms(lat[len(lat)-1])
	}
	for _, c := range clients {
		rc, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = c.Release(rc)
		cancel()
	}
	rep.DurationMs = *ms(time.Since(start))
	return rep, nil
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
