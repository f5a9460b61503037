// Package lab implements `natkit lab`: emulated NATs in network namespaces, probed by natkit itself.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/natlab"
)

// Budgets of a lab run.
const (
	defaultTimeout = 3 * time.Minute
	// punchMatrixTimeout: with --punch, 45 pairs of the catalogue at up to
	// punchTimeout each in the worst case, about 1 s each in practice.
	punchMatrixTimeout = 10 * time.Minute
	serveReady         = 15 * time.Second // natkit serve must bind its STUN ports within this
	probeTimeout       = 30 * time.Second // one `natkit probe` in one host
	stunPort           = 3478             // RFC 8489 section 9 default port
)

// Options holds the lab command's dependencies, flags and test seams.
type Options struct {
	IO      *iostreams.IOStreams
	Globals *cmdutil.GlobalOptions
	Logger  *slog.Logger

	NATs []string
	Keep bool
	Down bool
	List bool
	// Punch runs natkit punch between every pair of NATs in PunchMode
	// (udp, tcp or ice).
	Punch     bool
	PunchMode string

	// Executable returns the natkit binary run inside the namespaces
	// (default os.Executable).
	Executable func() (string, error)
	// Available reports whether a lab can be built (default natlab.Available).
	Available func() error
}

// NewCmdLab returns `natkit lab`. runF replaces the run function in tests.
func NewCmdLab(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams, Globals: f.Globals, Executable: os.Executable, Available: natlab.Available}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build emulated NATs in network namespaces and probe through them (Linux, root)",
		Long: `lab builds every NAT of the catalogue (or those given with --nat) out of Linux
network namespaces and nftables, starts natkit serve on a server with two public
addresses, runs natkit probe from every host behind every NAT and prints what each
saw next to what the NAT should do. Everything is removed afterwards unless --keep
is given; lab --down removes every natkit namespace left behind.

With --punch it also runs natkit punch (meeting on serve's rendezvous server) between
every pair of NATs, one pair at a time (and between the two hosts each NAT then
has), and prints the grid: how each pair connected (path/strategy and the time to
connect) or why not (the failure code). --punch-mode tcp or ice punches with --tcp
or --ice.`,
		Example: `  sudo natkit lab
  sudo natkit lab --nat full-cone --nat symmetric-random --keep
  sudo natkit lab --punch
  sudo natkit lab --punch --punch-mode ice --nat full-cone --nat port-restricted-cone --json
  sudo natkit lab --down
  natkit lab --list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Down && (len(opts.NATs) > 0 || opts.Keep || opts.List) {
				return cmdutil.UsageErrorf("--down removes every lab: it takes no --nat, --keep or --list")
			}
			if opts.List && (len(opts.NATs) > 0 || opts.Keep) {
				return cmdutil.UsageErrorf("--list prints the catalogue: it takes no --nat or --keep")
			}
			if opts.Punch && (opts.Down || opts.List) {
				return cmdutil.UsageErrorf("--punch runs in a lab: it takes no --down or --list")
			}
			if cmd.Flags().Changed("punch-mode") && !opts.Punch {
				return cmdutil.UsageErrorf("--punch-mode needs --punch")
			}
			if _, ok := punchModes[opts.PunchMode]; !ok {
				return cmdutil.UsageErrorf("--punch-mode %q: use udp, tcp or ice", opts.PunchMode)
			}
			for i, name := range opts.NATs {
				if _, ok := natlab.Lookup(name); !ok {
					return cmdutil.UsageErrorf("--nat %q: unknown NAT; choose from %s", name, strings.Join(catalogueNames(), ", "))
				}
				if slices.Contains(opts.NATs[:i], name) {
					return cmdutil.UsageErrorf("--nat %q given twice", name)
				}
			}
			opts.Logger = f.Logger()
			if runF != nil {
				return runF(opts)
			}
			timeout := defaultTimeout
			if opts.Punch {
				timeout = punchMatrixTimeout
			}
			ctx, cancel := f.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return run(ctx, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&opts.NATs, "nat", nil, "build only this NAT (repeatable; see --list)")
	fl.BoolVar(&opts.Keep, "keep", false, "leave the lab running (remove it later with --down)")
	fl.BoolVar(&opts.Down, "down", false, "remove every namespace natkit lab made")
	fl.BoolVar(&opts.List, "list", false, "print the NAT catalogue and exit")
	fl.BoolVar(&opts.Punch, "punch", false, "also run natkit punch between every pair of NATs and print the grid")
	fl.StringVar(&opts.PunchMode, "punch-mode", "udp", "with --punch: udp, tcp (--tcp) or ice (--ice)")
	return cmd
}

func catalogueNames() []string {
	var names []string
	for _, s := range natlab.Catalogue() {
		names = append(names, s.Name)
	}
	return names
}

func run(ctx context.Context, opts *Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.List {
		return renderCatalogue(opts, natlab.Catalogue())
	}
	if err := opts.Available(); err != nil {
		return cmdutil.UsageErrorf("%v", err)
	}
	if opts.Down {
		n, err := natlab.Down(ctx, "")
		if err != nil {
			return err
		}
		return renderDown(opts, n)
	}

	start := time.Now()
	exe, err := opts.Executable()
	if err != nil {
		return fmt.Errorf("find the natkit binary: %w", err)
	}
	var specs []natlab.Spec
	for _, name := range opts.NATs {
		s, _ := natlab.Lookup(name)
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		specs = natlab.Catalogue()
	}
	if opts.Punch {
		// Two hosts behind each NAT: the grid's diagonal punches between
		// them.
		for i := range specs {
			specs[i].Hosts = 2
		}
	}

	opts.IO.StartProgress(fmt.Sprintf("building %d NATs", len(specs)))
	l, err := natlab.New(ctx, natlab.Config{Logger: opts.Logger}, specs...)
	if err != nil {
		opts.IO.StopProgress()
		return err
	}
	defer func() {
		if !opts.Keep {
			if err := l.Close(); err != nil {
				opts.Logger.Warn("lab: teardown", "err", err)
			}
		}
	}()

	opts.IO.StartProgress("starting natkit serve")
	serveCtx := ctx
	if opts.Keep {
		serveCtx = context.WithoutCancel(ctx) // serve outlives this command; --down kills it
	}
	if err := startServe(serveCtx, opts.Logger, l, exe); err != nil {
		opts.IO.StopProgress()
		return err
	}
	opts.IO.StartProgress("probing from every host")
	r := probeAll(ctx, l, exe)
	if opts.Punch {
		mode := opts.PunchMode
		if mode == "" {
			mode = "udp"
		}
		opts.IO.StartProgress("waiting for the rendezvous server")
		rctx, rcancel := context.WithCancel(ctx)
		server, stop, err := rendezvousFor(rctx, l, exe)
		if err != nil {
			rcancel()
			opts.IO.StopProgress()
			return err
		}
		r.Punch = punchAll(ctx, l, exe, mode, server, opts.IO.StartProgress)
		rcancel()
		stop()
		r.OK = r.OK && r.Punch.OK
	}
	opts.IO.StopProgress()
	r.Kept = opts.Keep
	r.DurationMs = time.Since(start).Milliseconds()
	if err := renderReport(opts, r); err != nil {
		return err
	}
	if !r.OK {
		return cmdutil.ErrBadResult
	}
	return nil
}

// startServe runs `natkit serve` in the server host and waits until both
// STUN addresses are bound there.
func startServe(ctx context.Context, log *slog.Logger, l *natlab.Lab, exe string) error {
	srv := l.Server()
	stderr := &syncWriter{}
	args := []string{"serve", "--listen", natlab.ServerAddr.String(), "--alt-ip", natlab.ServerAltAddr.String()}
	addrs := srv.Addrs()
	p := srv.Command(ctx, exe, args...)
	p.Stderr = stderr
	if err := srv.StartCommand(p); err != nil { // the lab kills it on Close
		return fmt.Errorf("start natkit serve in %s: %w", srv.NS(), err)
	}
	exited := make(chan error, 1)
	// Process.Wait, not Cmd.Wait: the lab's Close waits for the command
	// too, and of two Cmd.Waits one never returns (only one receives the
	// end of the stderr copy).
	go func() {
		st, err := p.Process.Wait()
		if err == nil {
			err = errors.New(st.String()) // "exit status 1"
		}
		exited <- err
	}()
	deadline := time.NewTimer(serveReady)
	defer deadline.Stop()
	for {
		ready := true
		for _, ip := range addrs {
			if !udpBound(srv, fmt.Sprintf("%s:%d", ip, stunPort)) {
				ready = false
			}
		}
		if ready {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("natkit serve exited in %s before answering (%v): %s", srv.NS(), err, stderr.lastLine())
		case <-deadline.C:
			return fmt.Errorf("natkit serve did not bind %s:%d within %s", natlab.ServerAddr, stunPort, serveReady)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// udpBound reports whether something in h's namespace holds addr.
func udpBound(h *natlab.Host, addr string) bool {
	err := h.Do(func() error {
		c, err := net.ListenPacket("udp4", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return errors.Is(err, syscall.EADDRINUSE)
}

// syncWriter keeps what a child process writes, for error messages.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncWriter) lastLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(s.b.String()), "\n")
	return lines[len(lines)-1]
}

// probeJSON is the part of natkit.probe/v1 the lab reads.
type probeJSON struct {
	Schema  string `json:"schema"`
	Results []struct {
		Server        string   `json:"server"`
		Success       bool     `json:"success"`
		LocalAddress  *string  `json:"local_address"`
		MappedAddress *string  `json:"mapped_address"`
		RTTMs         *float64 `json:"rtt_ms"`
		Error         *string  `json:"error"`
	} `json:"results"`
}

// probeAll runs natkit probe in every host, all at once.
func probeAll(ctx context.Context, l *natlab.Lab, exe string) Report {
	server := fmt.Sprintf("stun:%s:%d", natlab.ServerAddr, stunPort)
	r := Report{LabID: l.ID(), Server: server, OK: true}
	for _, ip := range l.Server().Addrs() {
		r.ServerAddresses = append(r.ServerAddresses, ip.String())
	}
	var wg sync.WaitGroup
	for _, n := range l.NATs() {
		nr := NATReport{Name: n.Spec().Name, Label: n.Label(), WANAddress: n.WAN().String(),
			Expected: n.Spec().Expect, Hosts: make([]HostReport, len(n.Hosts()))}
		for i, h := range n.Hosts() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nr.Hosts[i] = probeHost(ctx, n, h, exe, server)
			}()
		}
		r.NATs = append(r.NATs, nr)
	}
	wg.Wait()
	for _, nr := range r.NATs {
		for _, h := range nr.Hosts {
			r.Hosts++
			if h.AsExpected {
				r.HostsAsExpected++
			} else {
				r.OK = false
			}
		}
	}
	return r
}

func probeHost(ctx context.Context, n *natlab.NAT, h *natlab.Host, exe, server string) HostReport {
	hr := HostReport{Name: h.Name(), Namespace: h.NS(), Address: h.Addr().String()}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	out, err := h.Command(ctx, exe, "probe", "--json", server).Output()
	var p probeJSON
	if jerr := json.Unmarshal(out, &p); jerr != nil || len(p.Results) == 0 {
		msg := fmt.Sprintf("natkit probe gave no report: %v", err)
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			msg = fmt.Sprintf("natkit probe exited %d without a report", ee.ExitCode())
		}
		hr.Error = &msg
		return hr
	}
	res := p.Results[0]
	hr.Success, hr.LocalAddress, hr.MappedAddress, hr.RTTMs, hr.Error = res.Success, res.LocalAddress, res.MappedAddress, res.RTTMs, res.Error
	hr.AsExpected = asExpected(n, h, hr)
	return hr
}

// asExpected compares a probe with the NAT's spec: blocked UDP gets no
// answer; otherwise the mapped IP is the NAT's WAN, or the host's own
// address when there is no NAT.
func asExpected(n *natlab.NAT, h *natlab.Host, hr HostReport) bool {
	e := n.Spec().Expect
	if e.NATType == natlab.TypeUDPBlocked {
		return !hr.Success
	}
	if !hr.Success || hr.MappedAddress == nil {
		return false
	}
	host, _, err := net.SplitHostPort(*hr.MappedAddress)
	if err != nil {
		return false
	}
	want := n.WAN().String()
	if !e.BehindNAT {
		want = h.Addr().String()
	}
	return host == want
}
