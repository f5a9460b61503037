package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/rendezvous"
)

// Punch matrix budgets.
const (
	// punchTimeout is one `natkit punch` (--timeout): the strategies'
	// 10 s, the relay, and the result exchange.
	punchTimeout = 30 * time.Second
	// punchPause separates pairs: every run starts from quiet NATs (a
	// sequential NAT's next port is predicted from the runs before).
	punchPause = 100 * time.Millisecond
)

// Punch modes of the matrix and the natkit punch flags they add.
var punchModes = map[string][]string{"udp": nil, "tcp": {"--tcp"}, "ice": {"--ice"}}

// PunchMatrix is natkit punch between every pair of the lab's NATs.
type PunchMatrix struct {
	// Mode is udp, tcp or ice.
	Mode       string `json:"mode"`
	Rendezvous string `json:"rendezvous"`
	// NATs are the labels, in the grid's order.
	NATs      []string    `json:"nats"`
	Pairs     []PunchPair `json:"pairs"`
	Connected int         `json:"connected"`
	// OK is false when a run gave no report (natkit crashed or hung); a
	// pair that did not connect is a result, not an error.
	OK bool `json:"ok"`
}

// PunchPair is one run: A and B are NAT labels (the same label for the two
// hosts behind one NAT), with what each side reported.
type PunchPair struct {
	A     string    `json:"a"`
	B     string    `json:"b"`
	AView PunchView `json:"a_view"`
	BView PunchView `json:"b_view"`
}

// PunchView is the part of one side's natkit.punch/v1 report the matrix
// keeps.
type PunchView struct {
	Success         bool     `json:"success"`
	Path            *string  `json:"path"`
	Strategy        *string  `json:"strategy"`
	TimeToConnectMs *float64 `json:"time_to_connect_ms"`
	RTTMs           *float64 `json:"rtt_ms"`
	FailureReason   *string  `json:"failure_reason"`
	// Error is set when natkit punch gave no report.
	Error *string `json:"error,omitempty"`
}

// rendezvousFor returns the lab's rendezvous server, natkit serve's
// (--rendezvous-port, on both server addresses), once its UDP port is bound.
func rendezvousFor(ctx context.Context, l *natlab.Lab) (netip.AddrPort, error) {
	addr := netip.AddrPortFrom(natlab.ServerAddr, rendezvous.DefaultPort)
	deadline := time.NewTimer(serveReady)
	defer deadline.Stop()
	for !udpBound(l.Server(), addr.String()) {
		select {
		case <-deadline.C:
			return netip.AddrPort{}, fmt.Errorf("natkit serve did not bind its rendezvous port %s within %s", addr, serveReady)
		case <-ctx.Done():
			return netip.AddrPort{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return addr, nil
}

// punchAll runs natkit punch between every pair of NATs, one pair at a
// time, and the two hosts behind each NAT on the diagonal.
func punchAll(ctx context.Context, l *natlab.Lab, exe, mode string, server netip.AddrPort, progress func(string)) *PunchMatrix {
	m := &PunchMatrix{Mode: mode, Rendezvous: server.String(), Pairs: []PunchPair{}, OK: true}
	nats := l.NATs()
	for _, n := range nats {
		m.NATs = append(m.NATs, n.Label())
	}
	total := len(nats) * (len(nats) + 1) / 2
	for i, a := range nats {
		for _, b := range nats[i:] {
			if ctx.Err() != nil {
				return m
			}
			progress(fmt.Sprintf("punching %d/%d: %s ↔ %s", len(m.Pairs)+1, total, a.Label(), b.Label()))
			ha, hb := a.Hosts()[0], b.Hosts()[0]
			if a == b {
				if len(a.Hosts()) < 2 {
					continue
				}
				hb = a.Hosts()[1]
			}
			session := fmt.Sprintf("lab-%s-%d", l.ID(), len(m.Pairs))
			var p PunchPair
			p.A, p.B = a.Label(), b.Label()
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); p.AView = punchHost(ctx, ha, exe, mode, server, session) }()
			go func() { defer wg.Done(); p.BView = punchHost(ctx, hb, exe, mode, server, session) }()
			wg.Wait()
			if p.AView.Error != nil || p.BView.Error != nil {
				m.OK = false
			}
			if p.AView.Success && p.BView.Success {
				m.Connected++
			}
			m.Pairs = append(m.Pairs, p)
			select {
			case <-ctx.Done():
			case <-time.After(punchPause):
			}
		}
	}
	return m
}

// punchHost runs natkit punch --json in h.
func punchHost(ctx context.Context, h *natlab.Host, exe, mode string, server netip.AddrPort, session string) PunchView {
	ctx, cancel := context.WithTimeout(ctx, punchTimeout+5*time.Second)
	defer cancel()
	args := []string{"punch", "--json", "--rendezvous", server.String(), "--timeout", punchTimeout.String()}
	args = append(append(args, punchModes[mode]...), session)
	out, err := h.Command(ctx, exe, args...).Output()
	var v PunchView
	if jerr := json.Unmarshal(out, &v); jerr != nil {
		msg := fmt.Sprintf("natkit punch gave no report: %v", err)
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			msg = fmt.Sprintf("natkit punch exited %d without a report", ee.ExitCode())
		}
		return PunchView{Error: &msg}
	}
	return v
}

// cell is one side's view in the grid: path/strategy and time, or the
// failure code.
func (v PunchView) cell() string {
	switch {
	case v.Error != nil:
		return "error"
	case v.Success && v.Path != nil && v.Strategy != nil && v.TimeToConnectMs != nil:
		if *v.TimeToConnectMs < 10 {
			return fmt.Sprintf("%s/%s %.1fms", *v.Path, *v.Strategy, *v.TimeToConnectMs)
		}
		return fmt.Sprintf("%s/%s %.0fms", *v.Path, *v.Strategy, *v.TimeToConnectMs)
	case v.FailureReason != nil:
		return "✗ " + *v.FailureReason
	}
	return "?"
}

// renderPunch prints the grid: row A, column B is A's view of the run
// between A and B.
func renderPunch(w io.Writer, m *PunchMatrix) error {
	fmt.Fprintf(w, "\npunch (%s) between every pair of NATs: %d/%d connected — row's view: path/strategy time_to_connect, or the failure code\n",
		m.Mode, m.Connected, len(m.Pairs))
	idx := map[string]int{}
	for i, n := range m.NATs {
		idx[n] = i
	}
	grid := make([][]string, len(m.NATs))
	for i := range grid {
		grid[i] = make([]string, len(m.NATs))
		for j := range grid[i] {
			grid[i][j] = "-"
		}
	}
	for _, p := range m.Pairs {
		a, b := idx[p.A], idx[p.B]
		grid[a][b] = p.AView.cell()
		if a != b {
			grid[b][a] = p.BView.cell()
		}
	}
	rows := [][]string{append([]string{""}, m.NATs...)}
	for i, n := range m.NATs {
		rows = append(rows, append([]string{n}, grid[i]...))
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	var errs []string
	for _, p := range m.Pairs {
		for _, v := range []struct {
			side string
			v    PunchView
		}{{p.A, p.AView}, {p.B, p.BView}} {
			if v.v.Error != nil {
				errs = append(errs, fmt.Sprintf("%s ↔ %s, %s's side: %s", p.A, p.B, v.side, *v.v.Error))
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "errors:\n  %s\n", strings.Join(errs, "\n  "))
	}
	return nil
}
