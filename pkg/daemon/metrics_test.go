package daemon

import (
	"bytes"
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/natkit/natkit/pkg/buildinfo"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/anchor"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stunserver"
)

// TestMetricsLint: every natkit metric of every server passes promlint
// (counters end in _total, base units, help text, no clash), natkit_build_info
// carries version, revision and goversion, the Go runtime's and the process's
// collectors are there, and WriteMetrics writes what the registry gathers
// in a text format the Prometheus parser reads.
func TestMetricsLint(t *testing.T) {
	leaktest.Check(t)
	lo := netip.MustParseAddr("127.0.0.1")
	base := mediaBase()
	d, err := New(Config{
		STUN:       &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")},
		TURN:       turnConfig(),
		Rendezvous: &rendezvous.Config{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}},
		PBX: &PBXConfig{Config: pbx.Config{Domains: []string{"natkit.test"}, Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Accounts: sipAccounts},
			Media: &anchor.Config{IP: lo, MinPort: base, MaxPort: base + 49}, MediaIP: lo},
		Version: "v9.9.9-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	problems, err := testutil.GatherAndLint(d.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "natkit_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		} else {
			t.Logf("promlint (not natkit's): %s: %s", p.Metric, p.Text)
		}
	}

	var b bytes.Buffer
	if err := d.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	checkExposition(t, b.String())
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatalf("WriteMetrics is not the text format: %v", err)
	}
	bi := mfs["natkit_build_info"]
	if bi == nil || len(bi.Metric) != 1 || bi.Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("natkit_build_info %v", bi)
	}
	labels := map[string]string{}
	for _, l := range bi.Metric[0].Label {
		labels[l.GetName()] = l.GetValue()
	}
	if want := map[string]string{"version": "v9.9.9-test", "revision": buildinfo.Revision(), "goversion": runtime.Version()}; len(labels) != len(want) ||
		labels["version"] != want["version"] || labels["revision"] != want["revision"] || labels["goversion"] != want["goversion"] {
		t.Errorf("natkit_build_info labels %v, want %v", labels, want)
	}
	for _, name := range []string{
		"go_goroutines", "go_memstats_alloc_bytes", "go_gc_duration_seconds",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds",
		"natkit_start_time_seconds", "natkit_stun_messages_total", "natkit_turn_allocations_active",
		"natkit_rendezvous_sessions_active", "natkit_sip_requests_total", "natkit_sip_responses_total", "natkit_media_calls", "natkit_media_ice_offers_total",
	} {
		if mfs[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	// The collector reads the servers' Stats at the scrape: nothing counted
	// twice, nothing stale. A counter that moved shows at the next gather.
	if n, err := testutil.GatherAndCount(d.reg, "natkit_stun_messages_total"); err != nil || n != 2*len(stunserver.Verdicts()) {
		t.Errorf("natkit_stun_messages_total: %d samples (%v), want %d", n, err, 2*len(stunserver.Verdicts()))
	}
}
