package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/render"
	engine "github.com/natkit/natkit/pkg/sipua"
)

// SIP row budgets and numbers.
const (
	// sipPort is natkit serve's --sip-port default, where its PBX listens.
	sipPort = 5060
	// sipService is the PBX's delayed echo. It echoes what it receives
	// 5 s later and silence before that, so a 2 s call gets RTP back
	// (silence) but no echo delay.
	sipService = "9195"
	// sipDuration is each call's audio (natkit call --duration).
	sipDuration = 2 * time.Second
	// sipTimeout bounds one natkit call (--timeout): behind a NAT that
	// drops UDP the REGISTER never gets an answer.
	sipTimeout = 20 * time.Second
	// sipFirstAccount is the extension of the first NAT's account; the
	// NATs get one each, in order.
	sipFirstAccount = 1001
)

// SIPRow is natkit call to the PBX's delayed echo from behind each NAT.
type SIPRow struct {
	// Target is the URI called.
	Target     string    `json:"target"`
	DurationMs int64     `json:"duration_ms"`
	Calls      []SIPCall `json:"calls"`
	Answered   int       `json:"answered"`
	// OK is false when a call gave no report (natkit crashed or hung); a
	// call that was not answered is a result, not an error.
	OK bool `json:"ok"`
}

// SIPCall is the part of one host's natkit.call/v1 report the row keeps.
type SIPCall struct {
	NAT  string `json:"nat_name"`
	Host string `json:"host"`
	// Registered is whether natkit registered (through the NAT); null
	// when no REGISTER was answered.
	Registered  *bool    `json:"registered"`
	Answered    bool     `json:"answered"`
	FinalStatus *int     `json:"final_status"`
	SetupMs     *float64 `json:"setup_ms"`
	// BehindNAT is what the registrar's Via received/rport said.
	BehindNAT       *bool    `json:"behind_nat"`
	PacketsSent     uint64   `json:"packets_sent"`
	PacketsReceived uint32   `json:"packets_received"`
	LossPct         *float64 `json:"loss_pct"`
	// MediaAddress is where the RTP came from; Anchored is true when that
	// is the server (the PBX's media relay), not the far end.
	MediaAddress *string `json:"media_address"`
	Anchored     bool    `json:"anchored"`
	// Reason is why the call failed, from natkit call.
	Reason *string `json:"reason"`
	// Error is set when natkit call gave no report.
	Error *string `json:"error,omitempty"`
}

// sipAccounts are the PBX's accounts for the row: one per NAT, with a
// password made for this lab run and shown nowhere.
type sipAccounts struct {
	names    []string
	password string
}

func newSIPAccounts(nats int) (*sipAccounts, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	a := &sipAccounts{password: hex.EncodeToString(b[:])}
	for i := range nats {
		a.names = append(a.names, fmt.Sprint(sipFirstAccount+i))
	}
	return a, nil
}

// configFile writes natkit serve's --config with the accounts (and TURN
// off: the accounts are for the PBX) to a private directory, so that the
// password is in no command line; remove removes it.
func (a *sipAccounts) configFile() (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "natkit-lab-")
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	b.WriteString("no-turn: true\nuser:\n")
	for _, n := range a.names {
		fmt.Fprintf(&b, "  - %q\n", n+":"+a.password)
	}
	path = filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return path, func() { os.RemoveAll(dir) }, nil
}

// sipAll calls the delayed echo from the first host behind every NAT, the
// NATs at once, each as its NAT's account.
func sipAll(ctx context.Context, l *natlab.Lab, exe string, acc *sipAccounts) *SIPRow {
	target := fmt.Sprintf("sip:%s@%s:%d", sipService, natlab.ServerAddr, sipPort)
	row := &SIPRow{Target: target, DurationMs: sipDuration.Milliseconds(), OK: true}
	nats := l.NATs()
	row.Calls = make([]SIPCall, len(nats))
	var wg sync.WaitGroup
	for i, n := range nats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := n.Hosts()[0]
			row.Calls[i] = sipHost(ctx, h, exe, target, acc.names[i], acc.password, l.Server().Addrs())
			row.Calls[i].NAT, row.Calls[i].Host = n.Label(), strings.TrimPrefix(h.Name(), n.Label()+"-")
		}()
	}
	wg.Wait()
	for _, c := range row.Calls {
		if c.Error != nil {
			row.OK = false
		}
		if c.Answered {
			row.Answered++
		}
	}
	return row
}

// sipHost runs natkit call --json in h, registering as user.
func sipHost(ctx context.Context, h *natlab.Host, exe, target, user, password string, server []netip.Addr) SIPCall {
	ctx, cancel := context.WithTimeout(ctx, sipTimeout+5*time.Second)
	defer cancel()
	cmd := h.Command(ctx, exe, "call", "--json", "--timeout", sipTimeout.String(), "--duration", sipDuration.String(),
		"--user", user, target)
	cmd.Env = append(os.Environ(), "NATKIT_SIP_PASSWORD="+password)
	stderr := &syncWriter{}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	var rep engine.Report
	if jerr := json.Unmarshal(out, &rep); jerr != nil || rep.Schema != "natkit.call/v1" {
		msg := fmt.Sprintf("natkit call gave no report: %v", err)
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			msg = fmt.Sprintf("natkit call exited %d without a report", ee.ExitCode())
		}
		if line := stderr.lastLine(); line != "" {
			msg += ": " + line
		}
		return SIPCall{Error: &msg}
	}
	return sipView(rep.Call, server)
}

// sipView keeps what the row shows of a call.
func sipView(c engine.Call, server []netip.Addr) SIPCall {
	v := SIPCall{Registered: c.Registered, Answered: c.Answered, FinalStatus: c.FinalStatus, SetupMs: c.SetupMs}
	if c.NAT != nil {
		v.BehindNAT = c.NAT.BehindNAT
	}
	if m := c.Media; m != nil {
		v.PacketsSent, v.PacketsReceived, v.MediaAddress = m.PacketsSent, m.PacketsReceived, m.RemoteAddress
		if m.PacketsReceived > 0 {
			loss := m.LossPct
			v.LossPct = &loss
		}
		v.Anchored = anchored(m.RemoteAddress, server)
	}
	switch {
	case c.Error != nil:
		v.Reason = c.Error
	case !c.Answered && c.Reason != nil:
		v.Reason = c.Reason
	}
	return v
}

// anchored reports whether addr (IP:PORT) is one of the server's.
func anchored(addr *string, server []netip.Addr) bool {
	if addr == nil {
		return false
	}
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		return false
	}
	for _, s := range server {
		if ap.Addr().Unmap() == s {
			return true
		}
	}
	return false
}

// cells are the call's columns in the table.
func (c SIPCall) cells() []string {
	if c.Error != nil {
		return []string{"error", "", "", "", "", "", ""}
	}
	answered := "no"
	if c.Answered {
		answered = "yes"
	} else if c.FinalStatus != nil {
		answered = fmt.Sprintf("no (%d)", *c.FinalStatus)
	}
	setup := "-"
	if c.SetupMs != nil {
		setup = fmt.Sprintf("%.1fms", *c.SetupMs)
	}
	loss := "-"
	if c.LossPct != nil {
		loss = fmt.Sprintf("%.1f%%", *c.LossPct)
	}
	media := str(c.MediaAddress)
	if c.Anchored {
		media = "anchored " + media
	}
	return []string{yesNo(c.Registered), answered, setup, fmt.Sprint(c.PacketsSent), fmt.Sprint(c.PacketsReceived), loss, media}
}

// renderSIP prints the SIP row: one line per NAT.
func renderSIP(w io.Writer, s *SIPRow) error {
	fmt.Fprintf(w, "\nnatkit call %s (%s of audio) from behind each NAT: %d/%d answered — media from the server is anchored by its PBX\n",
		s.Target, time.Duration(s.DurationMs)*time.Millisecond, s.Answered, len(s.Calls))
	rows := [][]string{{"NAT", "HOST", "REGISTERED", "ANSWERED", "SETUP", "RTP SENT", "RTP RECEIVED", "LOSS", "MEDIA FROM"}}
	var why []string
	for _, c := range s.Calls {
		rows = append(rows, append([]string{c.NAT, c.Host}, c.cells()...))
		switch {
		case c.Error != nil:
			why = append(why, fmt.Sprintf("%s %s: %s", c.NAT, c.Host, *c.Error))
		case c.Reason != nil:
			why = append(why, fmt.Sprintf("%s %s: %s", c.NAT, c.Host, *c.Reason))
		}
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	if len(why) > 0 {
		fmt.Fprintf(w, "failures:\n  %s\n", strings.Join(why, "\n  "))
	}
	return nil
}

// sipReady waits until the PBX's UDP port is bound in the server.
func sipReady(ctx context.Context, l *natlab.Lab) error {
	addr := netip.AddrPortFrom(natlab.ServerAddr, sipPort)
	deadline := time.NewTimer(serveReady)
	defer deadline.Stop()
	for !udpBound(l.Server(), addr.String()) {
		select {
		case <-deadline.C:
			return fmt.Errorf("natkit serve did not bind its SIP port %s within %s", addr, serveReady)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
