package call

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/render"
	engine "github.com/natkit/natkit/pkg/sipua"
)

// verdict is the one line that opens the human output.
func verdict(cs *iostreams.ColorScheme, c engine.Call) string {
	reason := ""
	if c.Reason != nil {
		reason = *c.Reason
	}
	status := func() string {
		if c.FinalStatus == nil {
			return reason
		}
		return strings.TrimSpace(strconv.Itoa(*c.FinalStatus) + " " + reason)
	}
	switch {
	case c.Registered != nil && !*c.Registered:
		return cs.Red("Registration failed: " + reason)
	case c.Answered && c.Media != nil && c.Media.PacketsReceived > 0:
		line := fmt.Sprintf("Call answered: %s in %s", status(), render.Ms(c.SetupMs))
		if c.RingingMs != nil {
			line += fmt.Sprintf(" (ringing after %s)", render.Ms(c.RingingMs))
		}
		line += "; audio both ways"
		if c.Media.MOS != nil {
			line += fmt.Sprintf(", MOS %.2f", *c.Media.MOS)
		}
		return cs.Green(line)
	case c.Answered && c.Media != nil && c.Media.PacketsSent > 0:
		return cs.Yellow(fmt.Sprintf("Call answered (%s) but no audio came back: one-way audio — a NAT or firewall drops RTP to %s",
			status(), render.Dash(c.Media.LocalAddress)))
	case c.Answered:
		why := "no audio"
		if c.Error != nil {
			why = *c.Error
		}
		return cs.Yellow(fmt.Sprintf("Call answered (%s) but %s", status(), why))
	case c.Cancelled:
		return cs.Red(fmt.Sprintf("No answer before the timeout: call cancelled (%s)", status()))
	case c.FinalStatus != nil:
		return cs.Red("Call rejected: " + status())
	}
	return cs.Red("Call failed: " + reason)
}

// columnWidth is the distance between two parties of the ladder.
const columnWidth = 26

// renderLadder draws the messages as RFC 3665 does: one column per party
// (natkit first), an arrow per message with the method or status on it.
func renderLadder(w io.Writer, c engine.Call) {
	if len(c.Ladder) == 0 {
		return
	}
	local := ""
	if c.LocalAddress != nil {
		local = *c.LocalAddress
	}
	col := map[string]int{}
	var names []string
	add := func(addr string) int {
		if addr == local || addr == "" {
			addr = local
		}
		if i, ok := col[addr]; ok {
			return i
		}
		col[addr] = len(names)
		names = append(names, addr)
		return len(names) - 1
	}
	add(local)
	type arrow struct {
		t        float64
		from, to int
		label    string
	}
	var arrows []arrow
	for _, m := range c.Ladder {
		from, to := m.From, m.To
		if m.Direction == engine.Sent {
			from = local
		} else {
			to = local
		}
		arrows = append(arrows, arrow{m.TimeMs, add(from), add(to), m.MethodOrStatus})
	}
	const margin = 12
	width := margin + (len(names)-1)*columnWidth + 1
	head := []rune(strings.Repeat(" ", width+columnWidth))
	head2 := []rune(strings.Repeat(" ", width+columnWidth))
	for i, n := range names {
		title := n
		if i == 0 {
			title = "natkit"
		}
		center(head, margin+i*columnWidth, title)
		if i == 0 {
			center(head2, margin, n)
		}
	}
	fmt.Fprintln(w, strings.TrimRight(string(head), " "))
	if names[0] != "" {
		fmt.Fprintln(w, strings.TrimRight(string(head2), " "))
	}
	for _, a := range arrows {
		line := []rune(strings.Repeat(" ", width))
		for i := range names {
			line[margin+i*columnWidth] = '|'
		}
		prefix := []rune(fmt.Sprintf("%8.1f ms", a.t))
		copy(line, prefix)
		lo, hi := min(a.from, a.to), max(a.from, a.to)
		x0, x1 := margin+lo*columnWidth, margin+hi*columnWidth
		if lo == hi {
			x1 = x0 + columnWidth/2
		}
		for x := x0 + 1; x < x1; x++ {
			line[x] = '-'
		}
		if a.from <= a.to {
			line[x1-1] = '>'
		} else {
			line[x0+1] = '<'
		}
		label := a.label
		if room := x1 - x0 - 5; len([]rune(label)) > room {
			label = string([]rune(label)[:max(room, 0)])
		}
		if label != "" {
			center(line, (x0+x1)/2, " "+label+" ")
		}
		fmt.Fprintln(w, strings.TrimRight(string(line), " "))
	}
}

// center writes s centred on column x.
func center(line []rune, x int, s string) {
	r := []rune(s)
	start := max(0, x-len(r)/2)
	for i, c := range r {
		if start+i < len(line) {
			line[start+i] = c
		}
	}
}

// renderCall writes one call: the verdict, the ladder, the figures.
func renderCall(w io.Writer, cs *iostreams.ColorScheme, c engine.Call, verbose bool) error {
	if _, err := fmt.Fprintln(w, verdict(cs, c)); err != nil {
		return err
	}
	fmt.Fprintln(w)
	renderLadder(w, c)
	fmt.Fprintln(w)
	rows := [][]string{}
	add := func(k, v string) { rows = append(rows, []string{cs.Bold(k), v}) }
	add("Call-ID", render.Dash(c.CallID))
	if c.Registered != nil {
		reg := "yes"
		if !*c.Registered {
			reg = "no"
		}
		if c.RegisterStatus != nil {
			reg += fmt.Sprintf(" (%d)", *c.RegisterStatus)
		}
		add("Registered", reg)
	}
	if n := c.NAT; n != nil {
		seen := render.Dash(n.Received)
		if n.Rport != nil {
			seen = fmt.Sprintf("%s port %d", seen, *n.Rport)
		}
		if n.BehindNAT != nil && *n.BehindNAT {
			seen += ", behind NAT"
		} else if n.BehindNAT != nil {
			seen += ", no NAT"
		}
		if n.ContactRewritten != nil && *n.ContactRewritten {
			seen += "; Contact rewritten by the registrar"
		}
		add("Registrar saw", seen)
	}
	if c.SessionExpiresS != nil {
		add("Session timer", fmt.Sprintf("%d s, refresher %s, %d refreshes", *c.SessionExpiresS, render.Dash(c.Refresher), c.Refreshes))
	}
	if m := c.Media; m != nil {
		add("Media", fmt.Sprintf("%s/%d, %s <-> %s", m.Codec, m.SampleRate, render.Dash(m.LocalAddress), render.Dash(m.RemoteAddress)))
		add("Path", mediaPath(m))
		add("Packets", fmt.Sprintf("sent %d, received %d, lost %d (%.1f%%)", m.PacketsSent, m.PacketsReceived, m.PacketsLost, m.LossPct))
		mos := "-"
		if m.MOS != nil {
			mos = fmt.Sprintf("%.2f", *m.MOS)
		}
		add("Quality", fmt.Sprintf("jitter %.1f ms, RTT %s, MOS %s", m.JitterMs, render.Ms(m.RTTMs), mos))
		echo := "none heard"
		if m.EchoDelayMs != nil {
			echo = render.Ms(m.EchoDelayMs) + " round trip"
		}
		add("Echo", echo)
		if len(m.MixedFrom) > 0 {
			ids := make([]string, len(m.MixedFrom))
			for i, id := range m.MixedFrom {
				ids[i] = fmt.Sprintf("%08x", id)
			}
			add("Mixed from", fmt.Sprintf("%d other source%s (RTP CSRC %s; ours %08x)", len(ids), plural(len(ids)), strings.Join(ids, ", "), m.SSRC))
		}
		if m.DTMFSent != nil || m.DTMFReceived != nil {
			add("DTMF", fmt.Sprintf("sent %s, received %s", render.Dash(m.DTMFSent), render.Dash(m.DTMFReceived)))
		}
		if m.Latched {
			add("Latched", "the far end's RTP came from another address than its SDP said (NAT on its side)")
		}
	}
	if c.Error != nil {
		add("Problem", *c.Error)
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	if verbose {
		fmt.Fprintln(w)
		for _, m := range c.Ladder {
			sdp := ""
			if m.SDP {
				sdp = " (SDP)"
			}
			fmt.Fprintf(w, "  %8.1f ms  %-8s %s -> %s  %s  [%s]%s\n", m.TimeMs, m.Direction, m.From, m.To, m.MethodOrStatus, m.CSeq, sdp)
		}
	}
	return nil
}

// renderAnswer writes answer mode: a verdict, then each call.
func renderAnswer(w io.Writer, cs *iostreams.ColorScheme, rep engine.AnswerReport, verbose bool) error {
	line := fmt.Sprintf("Answered %d call%s as %s", len(rep.Calls), plural(len(rep.Calls)), rep.AOR)
	switch {
	case rep.Registered != nil && !*rep.Registered:
		line = cs.Red(fmt.Sprintf("Registration of %s failed: %s", rep.AOR, render.Dash(rep.Error)))
	case len(rep.Calls) == 0:
		line = cs.Yellow(fmt.Sprintf("No call came for %s before the timeout", rep.AOR))
	default:
		line = cs.Green(line)
	}
	if _, err := fmt.Fprintln(w, line); err != nil {
		return err
	}
	for i, c := range rep.Calls {
		fmt.Fprintf(w, "\n%s from %s\n", cs.Bold(fmt.Sprintf("Call %d", i+1)), c.Target)
		if err := renderCall(w, cs, c, verbose); err != nil {
			return err
		}
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// mediaPath says which way the audio went (media.path).
func mediaPath(m *engine.Media) string {
	ice := m.ICE
	switch {
	case m.Path == nil && ice != nil && ice.Error != nil:
		return "none: " + *ice.Error
	case m.Path == nil:
		return "-"
	case *m.Path == engine.PathPlain:
		return "plain RTP to the address in the far end's SDP (no ICE)"
	case ice == nil:
		return *m.Path
	}
	via := ""
	if *m.Path == engine.PathRelay {
		via = ", through TURN"
	}
	return fmt.Sprintf("%s (ICE %s %s <-> %s %s%s)", *m.Path, render.Dash(ice.LocalCandidateType), render.Dash(ice.Local),
		render.Dash(ice.RemoteCandidateType), render.Dash(ice.Remote), via)
}
