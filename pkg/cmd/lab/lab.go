// Package lab implements `natkit lab`: emulated NATs in network namespaces, classified and punched through by natkit itself.
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/rendezvous"
)

// Budgets of a lab run.
const (
	defaultTimeout = 3 * time.Minute
	// punchMatrixTimeout: with the punch matrix, 45 pairs of the
	// catalogue at up to punchTimeout each in the worst case, about 1 s
	// each in practice.
	punchMatrixTimeout = 10 * time.Minute
	serveReady         = 15 * time.Second // natkit serve must bind its STUN ports within this
	stunPort           = 3478             // RFC 8489 section 9 default port
)

// Options holds the lab command's dependencies, flags and test seams.
type Options struct {
	IO      *iostreams.IOStreams
	Globals *cmdutil.GlobalOptions
	Logger  *slog.Logger

	NATs []string
	Keep bool
	// Down removes a lab: DownID, else with All every recorded lab, else
	// the last lab the user made.
	Down   bool
	DownID string
	All    bool
	List   bool
	// Punch runs natkit punch between every pair of NATs in PunchMode
	// (udp, tcp or ice); on by default, --punch=false skips it.
	Punch     bool
	PunchMode string
	// SIP runs natkit call to the PBX's delayed echo from behind each NAT;
	// on by default, --sip=false skips it.
	SIP bool

	// Executable returns the natkit binary run inside the namespaces
	// (default os.Executable).
	Executable func() (string, error)
	// Available reports whether a lab can be built (default natlab.Available).
	Available func() error
	// Registry records the labs (default: natlab.DefaultRegistryDir).
	Registry *natlab.Registry
	// User is the user a lab is recorded for and --down looks for
	// (default: invokingUser).
	User func() int
}

// invokingUser is the user running natkit: the one behind sudo when root.
func invokingUser() int {
	if os.Geteuid() == 0 {
		if uid, err := strconv.Atoi(os.Getenv("SUDO_UID")); err == nil && uid >= 0 {
			return uid
		}
	}
	return os.Getuid()
}

// NewCmdLab returns `natkit lab`. runF replaces the run function in tests.
func NewCmdLab(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams, Globals: f.Globals, Executable: os.Executable, Available: natlab.Available,
		Registry: &natlab.Registry{Dir: natlab.DefaultRegistryDir}, User: invokingUser}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Build emulated NATs in network namespaces, detect and punch through them (Linux, root)",
		Long: `lab builds every NAT of the catalogue (or those given with --nat) out of Linux
network namespaces and nftables, with two hosts behind each, and starts natkit
serve on a server with two public addresses (full RFC 5780).

It runs natkit detect from every host behind every NAT (the NATs at once, the
hosts behind one NAT one after the other) and prints what detect said next to
what the NAT should do (see --list): a wrong value is shown as "detected ≠
expected" and the row is marked NO.

Then it runs natkit punch (meeting on serve's rendezvous server) between every
pair of NATs, one pair at a time, and between the two hosts behind each NAT, and
prints the grid: how each pair connected (path/strategy and the time to connect)
or why not (the failure code). --punch-mode tcp or ice punches with --tcp or
--ice; --punch=false skips the matrix (and builds one host behind each NAT).

Then, from behind each NAT (the NATs at once), natkit call registers to serve's
PBX (one account per NAT) and calls its delayed echo, sip:9195@SERVER:5060, for
2 s, and prints whether the call was answered, the setup time, the RTP sent,
received and lost, and where the RTP came from: "anchored" when from the
server (the PBX's media relay). --sip=false skips it. The echo comes back 5 s
late, so a 2 s call hears silence echoed: enough to count the RTP, not to
measure the delay.

Exit status: 0 when detect was right behind every NAT and every punch run and
call gave a report (a pair that cannot connect, or a call not answered, is a
result, not an error), 1 otherwise.
Everything is removed afterwards unless --keep is given.

Each lab has an id: its namespaces are natkit-ID-NODE (ip netns list shows them),
and natkit records every lab it makes, with its user (the one behind sudo), in
` + natlab.DefaultRegistryDir + ` until the lab is removed (a tmpfs, like the
namespaces: both vanish at reboot). lab --down removes the last lab you made,
lab --down ID the lab ID, lab --down --all every recorded lab, whoever made it;
none of them removes a namespace of a lab natkit did not record (an older
natkit's: remove it with lab --down ID).`,
		Example: `  sudo natkit lab
  sudo natkit lab --nat full-cone --nat symmetric-random --keep
  sudo natkit lab --punch=false
  sudo natkit lab --sip=false --nat symmetric-random
  sudo natkit lab --punch-mode ice --nat full-cone --nat port-restricted-cone --json
  sudo natkit lab --down            # the last lab you made
  sudo natkit lab --down 3f9a1c     # lab 3f9a1c
  sudo natkit lab --down --all      # every recorded lab
  natkit lab --list`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.DownID = ""
			if len(args) == 1 {
				if !opts.Down {
					return cmdutil.UsageErrorf("unexpected argument %q: lab takes a lab id only with --down (lab --down ID)", args[0])
				}
				if !natlab.ValidID(args[0]) {
					return cmdutil.UsageErrorf("lab id %q: a lab id is lower-case letters and digits (the ID of natkit-ID-NODE)", args[0])
				}
				opts.DownID = args[0]
			}
			if opts.All && !opts.Down {
				return cmdutil.UsageErrorf("--all is for --down: lab --down --all removes every recorded lab")
			}
			if opts.All && opts.DownID != "" {
				return cmdutil.UsageErrorf("--down %s --all: give a lab id or --all, not both", opts.DownID)
			}
			if opts.Down && (len(opts.NATs) > 0 || opts.Keep || opts.List) {
				return cmdutil.UsageErrorf("--down removes a lab: it takes no --nat, --keep or --list")
			}
			if opts.List && (len(opts.NATs) > 0 || opts.Keep) {
				return cmdutil.UsageErrorf("--list prints the catalogue: it takes no --nat or --keep")
			}
			punchSet := cmd.Flags().Changed("punch") || cmd.Flags().Changed("punch-mode")
			if punchSet && (opts.Down || opts.List) {
				return cmdutil.UsageErrorf("--punch and --punch-mode run in a lab: they take no --down or --list")
			}
			if cmd.Flags().Changed("sip") && (opts.Down || opts.List) {
				return cmdutil.UsageErrorf("--sip runs in a lab: it takes no --down or --list")
			}
			if cmd.Flags().Changed("punch-mode") && !opts.Punch {
				return cmdutil.UsageErrorf("--punch-mode with --punch=false: there is no matrix to punch; drop one of them")
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
			if opts.SIP {
				timeout += sipTimeout
			}
			ctx, cancel := f.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return run(ctx, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&opts.NATs, "nat", nil, "build only this NAT (repeatable; see --list)")
	fl.BoolVar(&opts.Keep, "keep", false, "leave the lab running (remove it later with --down)")
	fl.BoolVar(&opts.Down, "down", false, "remove the last lab you made (--down ID: lab ID; --down --all: every recorded lab)")
	fl.BoolVar(&opts.All, "all", false, "with --down: remove every lab natkit recorded, whoever made it")
	fl.BoolVar(&opts.List, "list", false, "print the NAT catalogue and exit")
	fl.BoolVar(&opts.Punch, "punch", true, "run natkit punch between every pair of NATs and print the grid (--punch=false skips it)")
	fl.StringVar(&opts.PunchMode, "punch-mode", "udp", "how the matrix punches: udp, tcp (--tcp) or ice (--ice)")
	fl.BoolVar(&opts.SIP, "sip", true, "call the PBX's delayed echo (9195) from behind each NAT and print the row (--sip=false skips it)")
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
		return down(ctx, opts)
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
	l, err := natlab.New(ctx, natlab.Config{Logger: opts.Logger, Registry: opts.registry(), Owner: opts.user()}, specs...)
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
	var acc *sipAccounts
	if opts.SIP {
		if acc, err = newSIPAccounts(len(specs)); err != nil {
			opts.IO.StopProgress()
			return err
		}
	}
	if err := startServe(serveCtx, opts.Logger, l, exe, acc); err != nil {
		opts.IO.StopProgress()
		return err
	}
	hosts := 0
	for _, n := range l.NATs() {
		hosts += len(n.Hosts())
	}
	opts.IO.StartProgress(fmt.Sprintf("natkit detect in %d hosts behind %d NATs", hosts, len(specs)))
	server := fmt.Sprintf("stun:%s:%d", natlab.ServerAddr, stunPort)
	r := detectAll(ctx, l, exe, server, func(finished, total int) {
		if finished < total {
			opts.IO.StartProgress(fmt.Sprintf("natkit detect in %d hosts behind %d NATs: %d done", total, len(specs), finished))
		}
	})
	if opts.Punch && ctx.Err() == nil {
		mode := opts.PunchMode
		if mode == "" {
			mode = "udp"
		}
		opts.IO.StartProgress("waiting for the rendezvous server")
		rv, err := rendezvousFor(ctx, l)
		if err != nil {
			opts.IO.StopProgress()
			return err
		}
		r.Punch = punchAll(ctx, l, exe, mode, rv, opts.IO.StartProgress)
		r.OK = r.OK && r.Punch.OK
	}
	if opts.SIP && ctx.Err() == nil {
		opts.IO.StartProgress(fmt.Sprintf("natkit call %s from behind %d NATs", sipService, len(specs)))
		if err := sipReady(ctx, l); err != nil {
			opts.IO.StopProgress()
			return err
		}
		r.SIP = sipAll(ctx, l, exe, acc)
		r.OK = r.OK && r.SIP.OK
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

// startServe runs `natkit serve` in the server host, with the PBX's
// accounts when acc is not nil, and waits until both STUN addresses are
// bound there.
func startServe(ctx context.Context, log *slog.Logger, l *natlab.Lab, exe string, acc *sipAccounts) error {
	srv := l.Server()
	stderr := &syncWriter{}
	args := []string{"serve", "--listen", natlab.ServerAddr.String(), "--alt-ip", natlab.ServerAltAddr.String(),
		"--rendezvous-port", fmt.Sprint(rendezvous.DefaultPort)}
	if acc != nil {
		path, remove, err := acc.configFile()
		if err != nil {
			return fmt.Errorf("natkit serve's accounts: %w", err)
		}
		defer remove() // serve reads it at startup
		args = append(args, "--config", path, "--sip-port", fmt.Sprint(sipPort))
	}
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
