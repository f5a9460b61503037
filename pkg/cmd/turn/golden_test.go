package turn

import (
	"context"
	"testing"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/turnclient"
)

func cannedAudit() turnclient.AuditReport {
	return turnclient.AuditReport{Envelope: render.Envelope{Schema: "natkit.turn-audit/v1", NatkitVersion: "dev"},
		Server: "turn:203.0.113.5:3478", ServerAddress: "203.0.113.5:3478", Transport: "udp", RelayedAddress: sp("203.0.113.5:50123"),
		Checked: 3, Denied: 1, Allowed: 1, DurationMs: 12.5, Results: []turnclient.AuditResult{
			{Name: "loopback", Peer: "127.0.0.1:9", Verdict: "denied", Permission: "denied", PermissionCode: ip(403), Channel: "denied", ChannelCode: ip(403)},
			{Name: "IPv4-mapped ::ffff:127.0.0.1", Peer: "[::ffff:127.0.0.1]:9", Verdict: "allowed", Permission: "granted", Channel: "denied", ChannelCode: ip(400)},
			{Name: "private 10.0.0.1", Peer: "10.0.0.1:9", Verdict: "unknown", Permission: "error", Channel: "error"},
		}}
}

func cannedBench() turnclient.BenchReport {
	return turnclient.BenchReport{Envelope: render.Envelope{Schema: "natkit.turn-bench/v1", NatkitVersion: "dev"},
		Server: "turn:203.0.113.5:3478", ServerAddress: "203.0.113.5:3478", Transport: "udp", Peer: "198.51.100.7:3480",
		Allocations: 500, AllocationErrors: 2, AllocationsPerS: 4321.5, Clients: 4, Sent: 100000, Received: 99990, LossPct: 0.01,
		RoundTripsPerS: 20000, RelayedPacketsPerS: 40000, ThroughputMbps: 32, LatencyP50Ms: fp(0.2), LatencyP90Ms: fp(0.4),
		LatencyP99Ms: fp(1.1), LatencyMaxMs: fp(3.2), DurationMs: 5012.5, Errors: []string{"Allocate: server answered 486 Allocation Quota Reached"}}
}

// TestGoldenJSON locks the JSON documents of turn audit and turn bench (the
// repository-wide contract test reads them too).
func TestGoldenJSON(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sub  func(*cmdutil.Factory) *cobra.Command
		args []string
	}{
		{name: "audit.json", args: []string{"audit"}, sub: func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdAudit(f, func(o *AuditOptions) error {
				o.Run = func(context.Context, turnclient.Config, string, []turnclient.AuditTarget) (turnclient.AuditReport, error) {
					return cannedAudit(), nil
				}
				return auditRun(ctx, o)
			})
		}},
		{name: "bench.json", args: []string{"bench", "--peer", "198.51.100.7:3480"}, sub: func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdBench(f, func(o *BenchOptions) error {
				o.Run = func(context.Context, turnclient.BenchOptions) (turnclient.BenchReport, error) {
					return cannedBench(), nil
				}
				return benchRun(ctx, o)
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := execute(ctx, t, tc.sub, append(tc.args, "--json", "--server", "203.0.113.5", "-u", "alice", "-p", "pw")...)
			if r.stdout == "" {
				t.Fatalf("exit %d: %v", r.code, r.err)
			}
			golden.Check(t, tc.name, r.stdout)
		})
	}
}
