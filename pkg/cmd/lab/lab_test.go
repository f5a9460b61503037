package lab

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/golden"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
	"github.com/natkit/natkit/pkg/punch"
)

func TestNewCmdLabFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     string
		want     Options
		wantCode int // 0: parses
		wantErr  string
	}{
		{name: "default", args: "", want: Options{Punch: true}},
		{name: "nats and keep", args: "--nat full-cone --nat udp-blocked --keep", want: Options{NATs: []string{"full-cone", "udp-blocked"}, Keep: true, Punch: true}},
		{name: "down", args: "--down", want: Options{Down: true, Punch: true}},
		{name: "down id", args: "--down 3f9a1c", want: Options{Down: true, DownID: "3f9a1c", Punch: true}},
		{name: "down id first", args: "3f9a1c --down", want: Options{Down: true, DownID: "3f9a1c", Punch: true}},
		{name: "down all", args: "--down --all", want: Options{Down: true, All: true, Punch: true}},
		{name: "all without down", args: "--all", wantCode: cmdutil.ExitUsage, wantErr: "--all is for --down"},
		{name: "down id and all", args: "--down 3f9a1c --all", wantCode: cmdutil.ExitUsage, wantErr: "give a lab id or --all, not both"},
		{name: "down bad id", args: "--down natkit-3f9a1c-core", wantCode: cmdutil.ExitUsage, wantErr: `lab id "natkit-3f9a1c-core": a lab id is lower-case letters and digits`},
		{name: "down two ids", args: "--down 3f9a1c 4e8b2d", wantCode: cmdutil.ExitUsage, wantErr: "accepts at most 1 arg"},
		{name: "list", args: "--list", want: Options{List: true, Punch: true}},
		{name: "unknown nat", args: "--nat carrier-pigeon", wantCode: cmdutil.ExitUsage, wantErr: `--nat "carrier-pigeon": unknown NAT; choose from open-internet,`},
		{name: "nat twice", args: "--nat full-cone --nat full-cone", wantCode: cmdutil.ExitUsage, wantErr: "given twice"},
		{name: "down with nat", args: "--down --nat full-cone", wantCode: cmdutil.ExitUsage, wantErr: "--down removes a lab: it takes no --nat"},
		{name: "list with keep", args: "--list --keep", wantCode: cmdutil.ExitUsage, wantErr: "--list prints the catalogue"},
		{name: "positional", args: "full-cone", wantCode: cmdutil.ExitUsage, wantErr: `unexpected argument "full-cone": lab takes a lab id only with --down`},
		{name: "punch given", args: "--punch --nat full-cone", want: Options{NATs: []string{"full-cone"}, Punch: true}},
		{name: "no punch", args: "--punch=false --nat full-cone", want: Options{NATs: []string{"full-cone"}}},
		{name: "punch ice", args: "--punch-mode ice", want: Options{Punch: true, PunchMode: "ice"}},
		{name: "punch tcp", args: "--punch --punch-mode tcp", want: Options{Punch: true, PunchMode: "tcp"}},
		{name: "punch mode without punch", args: "--punch=false --punch-mode tcp", wantCode: cmdutil.ExitUsage, wantErr: "--punch-mode with --punch=false: there is no matrix"},
		{name: "punch bad mode", args: "--punch-mode smoke", wantCode: cmdutil.ExitUsage, wantErr: `--punch-mode "smoke": use udp, tcp or ice`},
		{name: "punch down", args: "--punch --down", wantCode: cmdutil.ExitUsage, wantErr: "--punch and --punch-mode run in a lab"},
		{name: "no punch down", args: "--punch=false --down", wantCode: cmdutil.ExitUsage, wantErr: "--punch and --punch-mode run in a lab"},
		{name: "punch list", args: "--punch --list", wantCode: cmdutil.ExitUsage, wantErr: "--punch and --punch-mode run in a lab"},
		{name: "punch mode list", args: "--punch-mode ice --list", wantCode: cmdutil.ExitUsage, wantErr: "--punch and --punch-mode run in a lab"},
		{name: "no sip", args: "--sip=false --nat full-cone", want: Options{NATs: []string{"full-cone"}, Punch: true, SIP: false}},
		{name: "no sip no punch", args: "--sip=false --punch=false", want: Options{}},
		{name: "sip down", args: "--sip --down", wantCode: cmdutil.ExitUsage, wantErr: "--sip runs in a lab: it takes no --down or --list"},
		{name: "no sip list", args: "--list --sip=false", wantCode: cmdutil.ExitUsage, wantErr: "--sip runs in a lab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, _ := iostreams.Test()
			f := cmdutil.NewFactory(ios)
			var got *Options
			cmd := NewCmdLab(f, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(strings.Fields(tt.args))
			cmd.SetOut(ios.Out)
			cmd.SetErr(ios.ErrOut)
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if code := cmdutil.ExitCode(err, false); code != tt.wantCode {
					t.Errorf("exit code = %d, want %d", code, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.PunchMode == "" {
				tt.want.PunchMode = "udp"
			}
			tt.want.SIP = !strings.Contains(tt.args, "--sip=false") // on by default
			if strings.Join(got.NATs, ",") != strings.Join(tt.want.NATs, ",") || got.Keep != tt.want.Keep ||
				got.Down != tt.want.Down || got.DownID != tt.want.DownID || got.All != tt.want.All ||
				got.List != tt.want.List || got.Punch != tt.want.Punch || got.PunchMode != tt.want.PunchMode ||
				got.SIP != tt.want.SIP {
				t.Errorf("options = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRunList(t *testing.T) {
	ios, _, out, _ := iostreams.Test()
	o := &Options{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: true}, List: true}
	if err := run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Schema != "natkit.lab/v1" || r.Action != "list" || len(r.Catalogue) != len(natlab.Catalogue()) {
		t.Errorf("list report = %+v", r)
	}
	golden.Check(t, "list.json", regexp.MustCompile(`"natkit_version": "[^"]*"`).ReplaceAllString(out.String(), `"natkit_version": "VERSION"`))
}

func TestRunNotAvailable(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	o := &Options{IO: ios, Globals: &cmdutil.GlobalOptions{}, Available: func() error { return errors.New("natlab needs root") }}
	err := run(context.Background(), o)
	if code := cmdutil.ExitCode(err, true); code != cmdutil.ExitUsage || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("run without root = %v (exit %d), want exit 2 naming root", err, code)
	}
}

// TestExpected checks the catalogue's expectations in detect's terms:
// nulls where the lab cannot be measured, port_delta only for sequential
// allocation, and no mismatch of an expectation with itself.
func TestExpected(t *testing.T) {
	tests := []struct {
		name string
		want map[string]string // keys that must have these values
	}{
		{name: natlab.OpenInternet, want: map[string]string{"nat_type": "open-internet", "hairpinning": "null", "behind_nat": "false", "nat_layers": "0", "port_delta": "null"}},
		{name: natlab.FullCone, want: map[string]string{"hairpinning": "true", "nat_layers": "1", "cgnat": "false", "port_delta": "null"}},
		{name: natlab.PortRestrictedCone, want: map[string]string{"hairpinning": "false", "filtering_behavior": "address-and-port-dependent"}},
		{name: natlab.SymmetricRandom, want: map[string]string{"port_allocation": "random", "port_delta": "null"}},
		{name: natlab.SymmetricSequential, want: map[string]string{"port_allocation": "sequential", "port_delta": "1"}},
		{name: natlab.UDPFirewall, want: map[string]string{"hairpinning": "null", "behind_nat": "false", "filtering_behavior": "address-and-port-dependent"}},
		{name: natlab.UDPBlocked, want: map[string]string{"hairpinning": "null", "nat_layers": "null", "cgnat": "null", "behind_nat": "true", "mapping_behavior": "unknown"}},
		{name: natlab.DoubleNAT, want: map[string]string{"nat_type": "port-restricted-cone", "nat_layers": "2", "cgnat": "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, ok := natlab.Lookup(tt.name)
			if !ok {
				t.Fatalf("%s is not in the catalogue", tt.name)
			}
			v := spec.Expect.Detect()
			got := map[string]string{}
			for _, f := range v.Fields() {
				got[f[0]] = f[1]
			}
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("%s = %s, want %s", k, got[k], want)
				}
			}
			if d := v.Diff(v); len(d) != 0 {
				t.Errorf("diff with itself: %q", d)
			}
		})
	}
	seq, _ := natlab.Lookup(natlab.SymmetricSequential)
	got := seq.Expect.Detect()
	got.PortAllocation, got.PortDelta = natlab.PortsRandom, nil
	want := []string{"port_allocation = random, want sequential", "port_delta = null, want 1"}
	if d := got.Diff(seq.Expect.Detect()); strings.Join(d, "|") != strings.Join(want, "|") {
		t.Errorf("diff = %q, want %q", d, want)
	}
}

// sampleReport is a lab run with a right and a wrong detection, a host
// without a report and a small punch matrix.
func sampleReport() Report {
	sp := func(s string) *string { return &s }
	fp := func(f float64) *float64 { return &f }
	bp := func(b bool) *bool { return &b }
	ip := func(i int) *int { return &i }
	full, _ := natlab.Lookup(natlab.FullCone)
	seq, _ := natlab.Lookup(natlab.SymmetricSequential)
	fullV, seqV := full.Expect.Detect(), seq.Expect.Detect()
	wrong := seqV
	wrong.PortAllocation, wrong.PortDelta = natlab.PortsRandom, nil
	return Report{
		LabID: "abc123", Server: "stun:203.0.113.10:3478", ServerAddresses: []string{"203.0.113.10", "203.0.113.11"},
		OK: false, Hosts: 3, HostsAsExpected: 1,
		NATs: []NATReport{
			{Name: natlab.FullCone, Label: natlab.FullCone, WANAddress: "198.51.100.10", Expected: fullV, Hosts: []HostReport{
				{Name: "full-cone-h1", Namespace: "natkit-abc123-full-cone-h1", Address: "192.168.1.10",
					LocalAddress: sp("192.168.1.10:40000"), MappedAddress: sp("198.51.100.10:40000"),
					Detect:     &DetectView{Classification: fullV, Summary: "Full cone NAT.", Reasons: []string{}, DurationMs: 512},
					Mismatches: []string{}, AsExpected: true},
				{Name: "full-cone-h2", Namespace: "natkit-abc123-full-cone-h2", Address: "192.168.1.11",
					Mismatches: []string{}, Error: sp("natkit detect exited 2 without a report: --server: bad")},
			}},
			{Name: natlab.SymmetricSequential, Label: natlab.SymmetricSequential, WANAddress: "198.51.100.11", Expected: seqV, Hosts: []HostReport{
				{Name: "symmetric-sequential-h1", Namespace: "natkit-abc123-symmetric-sequential-h1", Address: "192.168.2.10",
					LocalAddress: sp("192.168.2.10:40001"), MappedAddress: sp("198.51.100.11:20001"),
					Detect: &DetectView{Classification: wrong, Summary: "Symmetric NAT.", Reasons: []string{"the port samples did not follow one step"},
						DurationMs: 730.5},
					Mismatches: wrong.Diff(seqV)},
			}},
		},
		Punch: &PunchMatrix{Mode: "udp", Rendezvous: "203.0.113.10:3480", NATs: []string{natlab.FullCone, natlab.SymmetricSequential},
			Pairs: []PunchPair{
				{A: natlab.FullCone, B: natlab.FullCone,
					AView: PunchView{Success: true, Path: sp("lan"), Strategy: sp("lan"), TimeToConnectMs: fp(0.4), RTTMs: fp(0.1)},
					BView: PunchView{Success: true, Path: sp("lan"), Strategy: sp("lan"), TimeToConnectMs: fp(0.4), RTTMs: fp(0.1)}},
				{A: natlab.FullCone, B: natlab.SymmetricSequential,
					AView: PunchView{FailureReason: sp("symmetric-unpredictable")},
					BView: PunchView{Success: true, Path: sp("direct"), Strategy: sp("predicted"), TimeToConnectMs: fp(51), RTTMs: fp(0.2)}},
			},
			Connected: 1, OK: true},
		SIP: &SIPRow{Target: "sip:9195@203.0.113.10:5060", DurationMs: 2000, Answered: 1, OK: false, Calls: []SIPCall{
			{NAT: natlab.FullCone, Host: "h1", Registered: bp(true), Answered: true, FinalStatus: ip(200), SetupMs: fp(3.1),
				BehindNAT: bp(true), PacketsSent: 101, PacketsReceived: 100, LossPct: fp(0), MediaAddress: sp("203.0.113.10:16384"), Anchored: true},
			{NAT: natlab.SymmetricSequential, Host: "h1", Registered: bp(false), Reason: sp("REGISTER failed: 403 Forbidden")},
			{NAT: natlab.UDPBlocked, Host: "h1", Error: sp("natkit call exited 2 without a report: --user: bad")},
		}},
		DurationMs: 12345,
	}
}

// TestRenderReport locks the text and JSON reports of a run (golden files
// in testdata/; go test -update rewrites them).
func TestRenderReport(t *testing.T) {
	for _, tc := range []struct {
		name string
		json bool
	}{{name: "run.txt"}, {name: "run.json", json: true}} {
		t.Run(tc.name, func(t *testing.T) {
			ios, _, out, _ := iostreams.Test()
			o := &Options{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: tc.json}}
			if err := renderReport(o, sampleReport()); err != nil {
				t.Fatal(err)
			}
			got := regexp.MustCompile(`"natkit_version": "[^"]*"`).ReplaceAllString(out.String(), `"natkit_version": "VERSION"`)
			golden.Check(t, tc.name, got)
		})
	}
}

// runLab runs the lab command's run function with nats and decodes its
// JSON report; it fails the test when stdout is not one JSON document.
func runLab(t *testing.T, o *Options) (Report, error) {
	t.Helper()
	exe := natlabtest.Natkit(t)
	ios, _, out, errOut := iostreams.Test()
	o.IO, o.Globals = ios, &cmdutil.GlobalOptions{JSON: true}
	o.Executable, o.Available = func() (string, error) { return exe, nil }, natlab.Available
	o.Registry = &natlab.Registry{Dir: t.TempDir()} // never the machine's
	o.Logger = cmdutil.NewFactory(ios).Logger()
	if o.PunchMode == "" {
		o.PunchMode = "udp"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	err := run(ctx, o)
	var r Report
	if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
		t.Fatalf("run: %v; stdout is not one JSON document (%v): %s; stderr: %s", err, jerr, out, errOut)
	}
	t.Cleanup(func() {
		if left, _ := natlab.Down(context.Background(), r.LabID); left != 0 {
			t.Errorf("run left %d namespaces of lab %s", left, r.LabID)
		}
	})
	return r, err
}

// checkDetect checks that natkit detect matched the expectation in every
// host of r, with the NAT's WAN as the mapped address.
func checkDetect(t *testing.T, r Report, hosts int) {
	t.Helper()
	if r.Hosts != hosts || r.HostsAsExpected != hosts {
		t.Errorf("detect matched %d/%d hosts, want %d/%d", r.HostsAsExpected, r.Hosts, hosts, hosts)
	}
	for _, n := range r.NATs {
		for _, h := range n.Hosts {
			if h.Detect == nil || !h.AsExpected || len(h.Mismatches) > 0 || h.Error != nil {
				t.Errorf("%s %s: detect %+v, mismatches %q, error %s", n.Label, h.Name, h.Detect, h.Mismatches, str(h.Error))
				continue
			}
			if d := h.Detect.Classification.Diff(n.Expected); len(d) > 0 {
				t.Errorf("%s %s: %q (reasons %q)", n.Label, h.Name, d, h.Detect.Reasons)
			}
			if n.Name == natlab.UDPBlocked {
				if h.MappedAddress != nil || h.Detect.ExitCode != 1 {
					t.Errorf("%s %s: mapped %s, exit %d through a NAT that drops UDP", n.Label, h.Name, str(h.MappedAddress), h.Detect.ExitCode)
				}
				continue
			}
			if h.MappedAddress == nil || !strings.HasPrefix(*h.MappedAddress, n.WANAddress+":") || h.Detect.ExitCode != 0 {
				t.Errorf("%s %s: mapped %s, exit %d; want the NAT's WAN %s, exit 0", n.Label, h.Name, str(h.MappedAddress), h.Detect.ExitCode, n.WANAddress)
			}
		}
	}
}

// TestRunNoPunch builds a lab with --punch=false: one host behind each NAT,
// natkit detect in each, no matrix.
func TestRunNoPunch(t *testing.T) {
	natlabtest.Require(t)
	leaktest.Check(t)
	r, err := runLab(t, &Options{NATs: []string{natlab.FullCone, natlab.UDPBlocked, natlab.DoubleNAT}})
	if err != nil || !r.OK {
		t.Errorf("run = %v, ok %v", err, r.OK)
	}
	checkDetect(t, r, 3)
	if r.Punch != nil {
		t.Errorf("punch matrix with --punch=false: %+v", r.Punch)
	}
}

// wantPunch is the outcome natkit punch must reach between hosts behind
// NATs a and b (catalogue names; two hosts behind one NAT when same): ""
// to connect, else the failure reason (as pkg/punch's lab test expects).
func wantPunch(a, b string, same bool) punch.FailureReason {
	has := func(n string) bool { return a == n || b == n }
	switch {
	case has(natlab.UDPBlocked):
		return punch.ReasonUDPBlocked
	case same:
		return ""
	case a == natlab.SymmetricRandom && b == natlab.SymmetricRandom:
		return punch.ReasonSymmetricBothRandom
	case has(natlab.SymmetricRandom) && has(natlab.SymmetricSequential):
		return punch.ReasonSymmetricUnpredictable
	}
	return ""
}

// TestRun builds four NATs with two hosts each, as natkit lab does by
// default: detect must be right in all eight hosts, and the punch matrix
// must connect every pair that can (two hosts behind one NAT over their
// LAN, the random symmetric NAT and the port-restricted cone by the
// birthday technique) and fail every pair with the UDP-blocking NAT.
func TestRun(t *testing.T) {
	natlabtest.Require(t)
	leaktest.Check(t)
	nats := []string{natlab.FullCone, natlab.PortRestrictedCone, natlab.SymmetricRandom, natlab.UDPBlocked}
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			if format == "text" {
				if testing.Short() {
					t.Skip("one lab is enough in -short mode")
				}
				testRunText(t, nats)
				return
			}
			r, err := runLab(t, &Options{NATs: nats, Punch: true})
			if err != nil || !r.OK {
				t.Errorf("run = %v, ok %v", err, r.OK)
			}
			checkDetect(t, r, 8)
			m := r.Punch
			if m == nil || m.Mode != "udp" || len(m.NATs) != 4 || len(m.Pairs) != 10 || !m.OK {
				t.Fatalf("punch matrix: %+v", m)
			}
			connected := 0
			for _, p := range m.Pairs {
				want := wantPunch(p.A, p.B, p.A == p.B)
				if want == "" {
					connected++
				}
				for _, v := range []PunchView{p.AView, p.BView} {
					if want != "" {
						if v.Success || v.FailureReason == nil || *v.FailureReason != string(want) {
							t.Errorf("%s ↔ %s: %s, want ✗ %s", p.A, p.B, v.cell(), want)
						}
						continue
					}
					if !v.Success || v.Path == nil || v.Strategy == nil || v.TimeToConnectMs == nil || v.RTTMs == nil {
						t.Errorf("%s ↔ %s: %s, want a connection", p.A, p.B, v.cell())
						continue
					}
					wantPath := string(punch.PathDirect)
					if p.A == p.B {
						wantPath = string(punch.PathLAN)
					}
					birthday := (p.A == natlab.PortRestrictedCone && p.B == natlab.SymmetricRandom) ||
						(p.A == natlab.SymmetricRandom && p.B == natlab.PortRestrictedCone)
					if *v.Path != wantPath || (birthday && *v.Strategy != string(punch.StrategyBirthday)) {
						t.Errorf("%s ↔ %s: %s, want path %s%s", p.A, p.B, v.cell(), wantPath,
							map[bool]string{true: " by the birthday technique"}[birthday])
					}
				}
			}
			if m.Connected != connected {
				t.Errorf("%d pairs connected, want %d", m.Connected, connected)
			}
		})
	}
}

// testRunText runs the lab with the text report and checks its verdict,
// its detect table and its grid.
func testRunText(t *testing.T, nats []string) {
	exe := natlabtest.Natkit(t)
	ios, _, out, errOut := iostreams.Test()
	o := &Options{IO: ios, Globals: &cmdutil.GlobalOptions{}, NATs: nats, Punch: true, PunchMode: "udp",
		Executable: func() (string, error) { return exe, nil }, Available: natlab.Available,
		Registry: &natlab.Registry{Dir: t.TempDir()}}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		t.Errorf("run = %v\nstderr: %s", err, errOut)
	}
	text := out.String()
	t.Logf("\n%s", text)
	for _, want := range []string{"natkit detect classified all 8 hosts as their NAT should be; punch (udp): 6/10 pairs connected",
		"lan/lan ", "direct/birthday ", "direct/simultaneous ", "✗ udp-blocked"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q", want)
		}
	}
	if strings.Contains(text, " NO\n") || strings.Contains(text, " ≠ ") || strings.Contains(text, "mismatches:") {
		t.Errorf("text report marks a mismatch")
	}
}

// TestRunSIP runs the lab's SIP row without the punch matrix: from behind
// a cone, a random symmetric NAT and a double NAT natkit call registers
// and calls the PBX's delayed echo, and the audio comes back from the
// server (anchored) with little loss; behind the NAT that drops UDP the
// call fails, with a reason, and that is a result, not an error.
func TestRunSIP(t *testing.T) {
	natlabtest.Require(t)
	leaktest.Check(t)
	r, err := runLab(t, &Options{NATs: []string{natlab.FullCone, natlab.SymmetricRandom, natlab.DoubleNAT, natlab.UDPBlocked}, SIP: true})
	if err != nil || !r.OK {
		t.Errorf("run = %v, ok %v", err, r.OK)
	}
	checkDetect(t, r, 4)
	s := r.SIP
	if s == nil || s.Target != "sip:9195@203.0.113.10:5060" || len(s.Calls) != 4 || !s.OK || s.Answered != 3 {
		t.Fatalf("sip row: %+v", s)
	}
	for _, c := range s.Calls {
		row := strings.Join(c.cells(), " | ")
		t.Logf("%s: %s; %s", c.NAT, row, str(c.Reason))
		if c.Error != nil || c.Host != "h1" {
			t.Errorf("%s %s: %s", c.NAT, c.Host, *c.Error)
			continue
		}
		if c.NAT == natlab.UDPBlocked {
			if c.Answered || c.Reason == nil || (c.Registered != nil && *c.Registered) {
				t.Errorf("%s: %s; %s: want no call through a NAT that drops UDP", c.NAT, row, str(c.Reason))
			}
			continue
		}
		if c.Registered == nil || !*c.Registered || !c.Answered || c.SetupMs == nil || c.BehindNAT == nil || !*c.BehindNAT {
			t.Errorf("%s: %s, behind NAT %s: %s", c.NAT, row, yesNo(c.BehindNAT), str(c.Reason))
		}
		if c.PacketsReceived == 0 || c.LossPct == nil || *c.LossPct > 5 || !c.Anchored {
			t.Errorf("%s: %s: want RTP from the server, little loss", c.NAT, row)
		}
	}
}
