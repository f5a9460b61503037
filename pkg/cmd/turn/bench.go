package turn

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/turnclient"
)

// BenchOptions are `natkit turn bench`'s.
type BenchOptions struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	Logger      func() *slog.Logger
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	ServerFlags
	Peer        string
	Allocations int
	Concurrency int
	Clients     int
	Window      int
	Duration    time.Duration
	Size        int

	Run func(context.Context, turnclient.BenchOptions) (turnclient.BenchReport, error)

	peer netip.AddrPort
}

// NewCmdBench returns `natkit turn bench`.
func NewCmdBench(f *cmdutil.Factory, runF func(*BenchOptions) error) *cobra.Command {
	o := &BenchOptions{IO: f.IOStreams, Globals: f.Globals, Logger: f.Logger, WithTimeout: f.WithTimeout, Run: turnclient.Bench}
	cmd := &cobra.Command{
		Use:   "bench --server SERVER --user U --password P [--peer ADDR]",
		Short: "Measure a TURN server: allocations/s, relayed packets/s, latency",
		Long: `Measure a TURN server you run: allocations per second (allocate and release,
--concurrency at a time), relayed packets per second and throughput (--clients
clients each keeping --window packets in flight through a channel to an echo
peer for --duration), and relay round-trip latency percentiles at a light rate.
Without --peer an echo peer is started on this host, on the address that
reaches the server (the server must be allowed to relay to it).

Only benchmark servers you operate: this is load.`,
		Example: `  natkit turn bench --server 127.0.0.1 --user alice --password secret --duration 5s`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.ServerFlags.validate(args); err != nil {
				return err
			}
			if o.Peer != "" {
				ap, err := parsePeer(o.Peer)
				if err != nil {
					return cmdutil.UsageErrorf("%v", err)
				}
				o.peer = ap
			}
			for _, v := range []struct {
				name   string
				v, max int
			}{{"--allocations", o.Allocations, 1000000}, {"--concurrency", o.Concurrency, 1024}, {"--clients", o.Clients, 1024},
				{"--window", o.Window, 4096}, {"--size", o.Size, 1200}} {
				if v.v < 1 || v.v > v.max {
					return cmdutil.UsageErrorf("%s %d: give 1 to %d", v.name, v.v, v.max)
				}
			}
			if o.Duration < 100*time.Millisecond {
				return cmdutil.UsageErrorf("--duration %s: give at least 100ms", o.Duration)
			}
			if runF != nil {
				return runF(o)
			}
			return benchRun(cmd.Context(), o)
		},
	}
	o.ServerFlags.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&o.Peer, "peer", "", "echo peer `IP:PORT` (default: one started here)")
	fl.IntVar(&o.Allocations, "allocations", 500, "allocations to make in the allocation phase")
	fl.IntVar(&o.Concurrency, "concurrency", 16, "allocations in flight at once")
	fl.IntVar(&o.Clients, "clients", 4, "relaying clients in the relay phase")
	fl.IntVar(&o.Window, "window", 64, "packets in flight per relaying client")
	fl.DurationVar(&o.Duration, "duration", 5*time.Second, "length of the relay phase")
	fl.IntVar(&o.Size, "size", 100, "packet size in bytes")
	return cmd
}

func benchRun(ctx context.Context, o *BenchOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := o.WithTimeout(ctx, o.Duration+2*time.Minute)
	defer cancel()
	cc, err := o.clientConfig(ctx, o.Logger())
	if err != nil {
		return err
	}
	peer := o.peer
	if !peer.IsValid() {
		// An echo peer on the address this host uses to reach the server.
		probe, err := net.Dial("udp", cc.Server.String())
		if err != nil {
			return cmdutil.ResultErrorf("cannot reach %s: %v", cc.Server, err)
		}
		local := netip.MustParseAddrPort(probe.LocalAddr().String()).Addr()
		probe.Close()
		pc, err := net.ListenPacket("udp", netip.AddrPortFrom(local, 0).String())
		if err != nil {
			return err
		}
		defer pc.Close()
		ectx, ecancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { turnclient.Echo(ectx, pc, nil); close(done) }()
		defer func() { ecancel(); <-done }()
		peer = netip.MustParseAddrPort(pc.LocalAddr().String())
	}
	o.IO.StartProgress(fmt.Sprintf("Benchmarking %s (about %s)…", o.endpoint.String(), o.Duration+2*time.Second))
	rep, err := o.Run(ctx, turnclient.BenchOptions{Client: cc, ServerLabel: o.endpoint.String(), Peer: peer,
		Allocations: o.Allocations, Concurrency: o.Concurrency, Clients: o.Clients, Window: o.Window, Duration: o.Duration, Size: o.Size})
	o.IO.StopProgress()
	if err != nil {
		return reachError(o.endpoint, cc.Transport, err)
	}
	if o.Globals.JSON {
		err = render.JSON(o.IO.Out, rep)
	} else {
		err = renderBench(o.IO.Out, rep)
	}
	if err != nil {
		return err
	}
	if rep.Allocations == 0 || rep.Received == 0 {
		msg := "no allocation succeeded"
		if len(rep.Errors) > 0 {
			msg += ": " + rep.Errors[0]
		}
		if rep.Allocations > 0 {
			msg = "no packet came back through the relay"
		}
		return cmdutil.ResultErrorf("%s", msg)
	}
	return nil
}

func renderBench(w io.Writer, r turnclient.BenchReport) error {
	fmt.Fprintf(w, "TURN bench %s (%s): %.0f allocations/s, %.0f relayed packets/s, p99 %s\n",
		r.Server, r.Transport, r.AllocationsPerS, r.RelayedPacketsPerS, render.Ms(r.LatencyP99Ms))
	rows := [][]string{
		{"allocations", fmt.Sprintf("%d ok, %d failed, %.1f/s", r.Allocations, r.AllocationErrors, r.AllocationsPerS)},
		{"relay", fmt.Sprintf("%d clients, %d sent, %d received (%.1f%% loss)", r.Clients, r.Sent, r.Received, r.LossPct)},
		{"relayed packets/s", fmt.Sprintf("%.0f (%.0f round trips/s)", r.RelayedPacketsPerS, r.RoundTripsPerS)},
		{"throughput", fmt.Sprintf("%.1f Mbit/s", r.ThroughputMbps)},
		{"latency p50/p90/p99/max", fmt.Sprintf("%s / %s / %s / %s", render.Ms(r.LatencyP50Ms), render.Ms(r.LatencyP90Ms), render.Ms(r.LatencyP99Ms), render.Ms(r.LatencyMaxMs))},
	}
	for _, e := range r.Errors {
		rows = append(rows, []string{"error", e})
	}
	return render.Table(w, rows)
}
