package turn

import (
	"context"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/turnclient"
)

func TestAuditFlags(t *testing.T) {
	tests := []struct {
		name, args, env string
		err             string
		check           func(t *testing.T, o *AuditOptions)
	}{
		{name: "minimal", args: "--server 192.0.2.5 -u a -p p", check: func(t *testing.T, o *AuditOptions) {
			if o.endpoint.Port != 3478 || o.endpoint.Transport != "udp" || o.User != "a" || o.Password != "p" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "turns uri with a ca file", args: "turns:192.0.2.5:5350 -u a --ca-file ca.pem", env: "pw", check: func(t *testing.T, o *AuditOptions) {
			if o.endpoint.Port != 5350 || o.endpoint.Transport != "tls" || o.CAFile != "ca.pem" || o.Password != "pw" {
				t.Errorf("%+v", o)
			}
		}},
		{name: "no server", args: "-u a -p p", err: "no server"},
		{name: "no user", args: "--server h -p p", err: "no username"},
		{name: "no password", args: "--server h -u a", err: "no password"},
		{name: "insecure and ca file", args: "--server turns:h -u a -p p --insecure --ca-file ca.pem", err: "--insecure and --ca-file exclude each other"},
		{name: "sip uri", args: "--server sip:h -u a -p p", err: "not a TURN server"},
		{name: "turns over tcp", args: "--server turns:h -u a -p p --transport tcp", err: "contradicts"},
		{name: "unknown flag", args: "--server h -u a -p p --peer 192.0.2.7:3480", err: "unknown flag: --peer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(PasswordEnv, tt.env)
			if got := parseFlags(t, NewCmdAudit, "audit", strings.Fields(tt.args), tt.err); got != nil {
				tt.check(t, got)
			}
		})
	}
}

// TestAuditLive audits natkit's servers composed as `natkit serve` runs
// them: with the default peer policy every bypass must be denied (exit 0);
// with loopback opened by --allow-peer the audit must find it (exit 1).
func TestAuditLive(t *testing.T) {
	leaktest.Check(t)
	cert, _ := selfSigned(t)
	audit := func(f *cmdutil.Factory) *cobra.Command { return NewCmdAudit(f, nil) }
	ctx := context.Background()

	t.Run("default policy", func(t *testing.T) {
		s := startServe(t, cert)
		for _, tr := range []string{"udp", "tcp"} {
			t.Run(tr, func(t *testing.T) {
				before := s.d.TURN().Stats()
				r := execute(ctx, t, audit, "audit", "--json", "--server", s.udp.String(), "--transport", tr, "-u", "alice", "-p", "wonderland")
				if r.code != 0 {
					t.Fatalf("exit %d: %v\n%s", r.code, r.err, r.stdout)
				}
				var rep turnclient.AuditReport
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
					t.Fatalf("stdout: %v\n%s", err, r.stdout)
				}
				targets := turnclient.DefaultAuditTargets(s.udp)
				if rep.Schema != "natkit.turn-audit/v1" || rep.Transport != tr || rep.Error != nil || rep.RelayedAddress == nil {
					t.Errorf("report %+v", rep)
				}
				if rep.Checked != len(targets) || rep.Denied != len(targets) || rep.Allowed != 0 || len(rep.Results) != len(targets) {
					t.Fatalf("checked %d, denied %d, allowed %d of %d targets", rep.Checked, rep.Denied, rep.Allowed, len(targets))
				}
				for i, x := range rep.Results {
					if x.Name != targets[i].Name || x.Verdict != "denied" || x.Permission != "denied" || x.Channel != "denied" ||
						x.PermissionCode == nil || x.ChannelCode == nil {
						t.Errorf("%s (%s): %s; permission %s %v, channel %s %v", x.Name, x.Peer, x.Verdict, x.Permission, x.PermissionCode, x.Channel, x.ChannelCode)
					}
				}
				// The server's policy refused them: two refusals a target.
				if got := s.d.TURN().Stats().PeerDenied - before.PeerDenied; got < int64(2*len(targets)) {
					t.Errorf("server counted %d peer denials, want at least %d", got, 2*len(targets))
				}
			})
		}
		t.Run("text", func(t *testing.T) {
			r := execute(ctx, t, audit, "audit", "--server", s.udp.String(), "-u", "alice", "-p", "wonderland")
			want := "All " + strconv.Itoa(len(turnclient.DefaultAuditTargets(s.udp))) + " forbidden peer addresses denied by turn:" + s.udp.String() + "\n"
			if r.code != 0 || !strings.HasPrefix(r.stdout, want) {
				t.Errorf("exit %d (%v), stdout:\n%s\nwant first line %q", r.code, r.err, r.stdout, want)
			}
		})
	})

	t.Run("loopback opened", func(t *testing.T) {
		s := startServe(t, cert, netip.MustParsePrefix("127.0.0.0/8"))
		r := execute(ctx, t, audit, "audit", "--json", "--server", s.udp.String(), "-u", "alice", "-p", "wonderland")
		if r.code != cmdutil.ExitBad || r.err == nil || !strings.Contains(r.err.Error(), "forbidden peer addresses are allowed by") {
			t.Fatalf("exit %d: %v, want exit 1", r.code, r.err)
		}
		var rep turnclient.AuditReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("stdout: %v\n%s", err, r.stdout)
		}
		allowed := map[string]bool{}
		for _, x := range rep.Results {
			if x.Verdict == "allowed" {
				allowed[x.Name] = true
			}
		}
		if rep.Allowed == 0 || rep.Allowed != len(allowed) || !allowed["loopback"] {
			t.Errorf("allowed %d: %v; want loopback among them", rep.Allowed, allowed)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		s := startServe(t, cert)
		r := execute(ctx, t, audit, "audit", "--server", s.udp.String(), "-u", "alice", "-p", "looking-glass")
		if r.code != cmdutil.ExitBad || r.err == nil || !strings.Contains(r.err.Error(), "audit could not allocate") {
			t.Fatalf("exit %d: %v, want exit 1: audit could not allocate", r.code, r.err)
		}
	})
}
