package turn

// What the command-level tests share: natkit's servers composed as `natkit
// serve` runs them, a self-signed certificate, an echo peer, and a root
// command around a turn subcommand.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
)

// selfSigned returns a certificate for 127.0.0.1, made now, and its PEM.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// served is natkit's STUN and TURN servers running in-process.
type served struct {
	d   *daemon.Daemon
	udp netip.AddrPort // UDP and TCP: the STUN port, shared with TURN
	tls netip.AddrPort
}

// startServe runs STUN with TURN on its port (UDP, TCP and TLS with cert),
// as `natkit serve --listen 127.0.0.1 --user alice:wonderland` composes
// them, on free ports of 127.0.0.1. allow opens peer prefixes that the
// policy denies otherwise. It stops at cleanup.
func startServe(t *testing.T, cert tls.Certificate, allow ...netip.Prefix) *served {
	t.Helper()
	d, err := daemon.New(daemon.Config{
		STUN: &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), UDPSockets: 2,
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, TLSAddr: netip.MustParseAddrPort("127.0.0.1:0")},
		TURN: &turnserver.Config{Realm: "natkit", Users: []turnserver.User{{Name: "alice", Password: "wonderland"}}, Allow: allow,
			RelayIP: netip.MustParseAddr("127.0.0.1"), RelayPorts: turnserver.PortRange{Min: 20000, Max: 29999},
			UserQuota: -1, ChallengeRate: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	s := &served{d: d}
	for _, l := range d.Listeners() {
		switch {
		case l.Service == "turn" && l.Network == "udp":
			s.udp = l.Addr
		case l.Service == "turn" && l.Network == "tls":
			s.tls = l.Addr
		}
	}
	if !s.udp.IsValid() || !s.tls.IsValid() {
		t.Fatalf("listeners %v", d.Listeners())
	}
	return s
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// result is what a command run left: its output and the exit code main
// would return.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

// execute runs the subcommand that sub builds under a root command like
// natkit's (--json and --timeout, flag errors as usage errors, the same
// exit-code mapping), with args after the root.
func execute(ctx context.Context, t *testing.T, sub func(*cmdutil.Factory) *cobra.Command, args ...string) result {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	r := executeOn(ctx, t, ios, sub, args...)
	r.stdout, r.stderr = out.String(), errOut.String()
	return r
}

// executeOn is execute with the given streams (e.g. a pseudo-terminal); the
// result's stdout and stderr are left for the caller to read.
func executeOn(ctx context.Context, t *testing.T, ios *iostreams.IOStreams, sub func(*cmdutil.Factory) *cobra.Command, args ...string) result {
	t.Helper()
	f := cmdutil.NewFactory(ios)
	var ran bool
	root := &cobra.Command{Use: "natkit", SilenceUsage: true, SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error { ran = true; return nil }}
	root.PersistentFlags().BoolVar(&f.Globals.JSON, "json", false, "")
	root.PersistentFlags().DurationVar(&f.Globals.Timeout, "timeout", 0, "")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return cmdutil.UsageErrorf("%v", err) })
	root.AddCommand(sub(f))
	root.SetArgs(args)
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&bytes.Buffer{})
	err := root.ExecuteContext(ctx)
	return result{code: cmdutil.ExitCode(err, ran), err: err}
}

// parseFlags runs subcommand name, built by newCmd with a run function
// that only records its options, with args. With wantErr set it wants exit
// 2 with that text and the run function not called, and returns nil; else
// it wants exit 0 and returns the options.
func parseFlags[O any](t *testing.T, newCmd func(*cmdutil.Factory, func(*O) error) *cobra.Command, name string, args []string, wantErr string) *O {
	t.Helper()
	var got *O
	r := execute(context.Background(), t, func(f *cmdutil.Factory) *cobra.Command {
		return newCmd(f, func(o *O) error { got = o; return nil })
	}, append([]string{name}, args...)...)
	if wantErr != "" {
		if r.code != cmdutil.ExitUsage || r.err == nil || !strings.Contains(r.err.Error(), wantErr) {
			t.Fatalf("exit %d, err %v; want exit 2 with %q", r.code, r.err, wantErr)
		}
		if got != nil {
			t.Error("the run function ran")
		}
		return nil
	}
	if r.code != 0 || got == nil {
		t.Fatalf("exit %d: %v", r.code, r.err)
	}
	return got
}
