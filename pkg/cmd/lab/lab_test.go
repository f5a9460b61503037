package lab

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/natlab/natlabtest"
)

func TestNewCmdLabFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     string
		want     Options
		wantCode int // 0: parses
		wantErr  string
	}{
		{name: "default", args: "", want: Options{}},
		{name: "nats and keep", args: "--nat full-cone --nat udp-blocked --keep", want: Options{NATs: []string{"full-cone", "udp-blocked"}, Keep: true}},
		{name: "down", args: "--down", want: Options{Down: true}},
		{name: "list", args: "--list", want: Options{List: true}},
		{name: "unknown nat", args: "--nat carrier-pigeon", wantCode: cmdutil.ExitUsage, wantErr: `--nat "carrier-pigeon": unknown NAT; choose from open-internet,`},
		{name: "nat twice", args: "--nat full-cone --nat full-cone", wantCode: cmdutil.ExitUsage, wantErr: "given twice"},
		{name: "down with nat", args: "--down --nat full-cone", wantCode: cmdutil.ExitUsage, wantErr: "--down removes every lab"},
		{name: "list with keep", args: "--list --keep", wantCode: cmdutil.ExitUsage, wantErr: "--list prints the catalogue"},
		{name: "positional", args: "full-cone", wantCode: cmdutil.ExitUsage, wantErr: "unknown command"},
		{name: "punch", args: "--punch --nat full-cone", want: Options{NATs: []string{"full-cone"}, Punch: true, PunchMode: "udp"}},
		{name: "punch ice", args: "--punch --punch-mode ice", want: Options{Punch: true, PunchMode: "ice"}},
		{name: "punch mode alone", args: "--punch-mode tcp", wantCode: cmdutil.ExitUsage, wantErr: "--punch-mode needs --punch"},
		{name: "punch bad mode", args: "--punch --punch-mode smoke", wantCode: cmdutil.ExitUsage, wantErr: `--punch-mode "smoke": use udp, tcp or ice`},
		{name: "punch down", args: "--punch --down", wantCode: cmdutil.ExitUsage, wantErr: "--punch runs in a lab"},
		{name: "punch list", args: "--punch --list", wantCode: cmdutil.ExitUsage, wantErr: "--punch runs in a lab"},
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
			if strings.Join(got.NATs, ",") != strings.Join(tt.want.NATs, ",") || got.Keep != tt.want.Keep ||
				got.Down != tt.want.Down || got.List != tt.want.List || got.Punch != tt.want.Punch || got.PunchMode != tt.want.PunchMode {
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
}

func TestRunNotAvailable(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	o := &Options{IO: ios, Globals: &cmdutil.GlobalOptions{}, Available: func() error { return errors.New("natlab needs root") }}
	err := run(context.Background(), o)
	if code := cmdutil.ExitCode(err, true); code != cmdutil.ExitUsage || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("run without root = %v (exit %d), want exit 2 naming root", err, code)
	}
}

// TestRun builds a small lab and runs the real natkit serve and probe in it.
func TestRun(t *testing.T) {
	natlabtest.Require(t)
	exe := natlabtest.Natkit(t)
	ios, _, out, errOut := iostreams.Test()
	o := &Options{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: true}, NATs: []string{natlab.FullCone, natlab.UDPBlocked, natlab.DoubleNAT},
		Executable: func() (string, error) { return exe, nil }, Available: natlab.Available}
	o.Logger = cmdutil.NewFactory(ios).Logger()
	err := run(context.Background(), o)
	var r Report
	if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
		t.Fatalf("run: %v; stdout is not one JSON document (%v): %s; stderr: %s", err, jerr, out, errOut)
	}
	if err != nil {
		t.Errorf("run = %v; report: %s", err, out)
	}
	if !r.OK || r.Hosts != 3 || r.HostsAsExpected != 3 {
		t.Errorf("report ok=%v hosts %d/%d: %s", r.OK, r.HostsAsExpected, r.Hosts, out)
	}
	for _, n := range r.NATs {
		h := n.Hosts[0]
		if n.Name == natlab.UDPBlocked {
			if h.Success {
				t.Errorf("%s: probe succeeded through a NAT that drops UDP", n.Name)
			}
			continue
		}
		if h.MappedAddress == nil || !strings.HasPrefix(*h.MappedAddress, n.WANAddress+":") {
			t.Errorf("%s: mapped %v, want the NAT's WAN %s", n.Name, str(h.MappedAddress), n.WANAddress)
		}
	}
	if left, _ := natlab.Down(context.Background(), r.LabID); left != 0 {
		t.Errorf("run left %d namespaces of lab %s", left, r.LabID)
	}
}

// TestRunPunch builds three NATs with two hosts each and runs the punch
// matrix in them: every pair connects (the diagonal over the LAN), and the
// text report prints the grid.
func TestRunPunch(t *testing.T) {
	natlabtest.Require(t)
	leaktest.Check(t)
	exe := natlabtest.Natkit(t)
	nats := []string{natlab.FullCone, natlab.PortRestrictedCone, natlab.SymmetricRandom}
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			if format == "text" && testing.Short() {
				t.Skip("one lab is enough in -short mode")
			}
			ios, _, out, errOut := iostreams.Test()
			o := &Options{IO: ios, Globals: &cmdutil.GlobalOptions{JSON: format == "json"}, NATs: nats, Punch: true, PunchMode: "udp",
				Executable: func() (string, error) { return exe, nil }, Available: natlab.Available}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			err := run(ctx, o)
			if err != nil {
				t.Errorf("run = %v\nstdout: %s\nstderr: %s", err, out, errOut)
			}
			if format == "text" {
				text := out.String()
				t.Logf("\n%s", text)
				for _, want := range []string{"punch (udp): 6/6 pairs connected", "lan/lan ", "direct/birthday ", "direct/simultaneous "} {
					if !strings.Contains(text, want) {
						t.Errorf("text report lacks %q", want)
					}
				}
				return
			}
			var r Report
			if jerr := json.Unmarshal(out.Bytes(), &r); jerr != nil {
				t.Fatalf("stdout is not one JSON document (%v): %s", jerr, out)
			}
			m := r.Punch
			if m == nil || !r.OK || m.Mode != "udp" || len(m.NATs) != 3 || len(m.Pairs) != 6 || m.Connected != 6 {
				t.Fatalf("punch matrix: %s", out)
			}
			for _, p := range m.Pairs {
				for _, v := range []PunchView{p.AView, p.BView} {
					if !v.Success || v.Path == nil || v.TimeToConnectMs == nil || v.RTTMs == nil {
						t.Errorf("%s ↔ %s: %+v", p.A, p.B, v)
						continue
					}
					if wantLAN := p.A == p.B; wantLAN != (*v.Path == "lan") {
						t.Errorf("%s ↔ %s: path %s", p.A, p.B, *v.Path)
					}
				}
			}
			if left, _ := natlab.Down(context.Background(), r.LabID); left != 0 {
				t.Errorf("run left %d namespaces of lab %s", left, r.LabID)
			}
		})
	}
}
