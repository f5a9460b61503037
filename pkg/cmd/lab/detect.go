package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/natlab"
)

// detectTimeout bounds one `natkit detect` in one host: its own default
// timeout (15 s; under 3.5 s even with UDP blocked) and the process start.
const detectTimeout = 30 * time.Second

// Verdict is the part of natkit.detect/v1 a lab NAT determines, with the
// same keys. Unknowns are null, as in detect's report.
type Verdict struct {
	NATType           string `json:"nat_type"`
	MappingBehavior   string `json:"mapping_behavior"`
	FilteringBehavior string `json:"filtering_behavior"`
	Hairpinning       *bool  `json:"hairpinning"`
	PortAllocation    string `json:"port_allocation"`
	PortDelta         *int   `json:"port_delta"`
	BehindNAT         *bool  `json:"behind_nat"`
	NATLayers         *int   `json:"nat_layers"`
	CGNAT             *bool  `json:"cgnat"`
}

// DetectView is what natkit detect reported in one host: the verdict and
// why.
type DetectView struct {
	Verdict
	Summary    string   `json:"summary"`
	Reasons    []string `json:"reasons"`
	DurationMs float64  `json:"duration_ms"`
	ExitCode   int      `json:"exit_code"`
}

// expected is what natkit detect must report behind a NAT that does what e
// says. The catalogue's Expectation has no nulls; where the lab cannot be
// measured the contract's answer is null: hairpinning without a NAT
// (nothing to hairpin through) and, with UDP blocked, hairpinning, NAT
// layers and carrier-grade NAT (no packet gets past the first router).
// port_delta is only given for sequential allocation. (The same rules as
// pkg/detect's lab test.)
func expected(e natlab.Expectation) Verdict {
	v := Verdict{NATType: e.NATType, MappingBehavior: e.Mapping, FilteringBehavior: e.Filtering,
		Hairpinning: &e.Hairpinning, PortAllocation: e.PortAllocation, BehindNAT: &e.BehindNAT,
		NATLayers: &e.NATLayers, CGNAT: &e.CGNAT}
	if e.PortAllocation == natlab.PortsSequential {
		v.PortDelta = &e.PortDelta
	}
	if !e.BehindNAT {
		v.Hairpinning = nil
	}
	if e.NATType == natlab.TypeUDPBlocked {
		v.Hairpinning, v.NATLayers, v.CGNAT = nil, nil, nil
	}
	return v
}

func reported(r detect.Report) Verdict {
	return Verdict{NATType: string(r.NATType), MappingBehavior: string(r.MappingBehavior),
		FilteringBehavior: string(r.FilteringBehavior), Hairpinning: r.Hairpinning,
		PortAllocation: string(r.PortAllocation), PortDelta: r.PortDelta, BehindNAT: r.BehindNAT,
		NATLayers: r.NATLayers, CGNAT: r.CGNAT}
}

// fields renders v's keys in the contract's order, null as "null", so that
// verdicts compare as strings.
func (v Verdict) fields() [][2]string {
	b := func(p *bool) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprint(*p)
	}
	i := func(p *int) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprint(*p)
	}
	return [][2]string{{"nat_type", v.NATType}, {"mapping_behavior", v.MappingBehavior},
		{"filtering_behavior", v.FilteringBehavior}, {"hairpinning", b(v.Hairpinning)},
		{"port_allocation", v.PortAllocation}, {"port_delta", i(v.PortDelta)}, {"behind_nat", b(v.BehindNAT)},
		{"nat_layers", i(v.NATLayers)}, {"cgnat", b(v.CGNAT)}}
}

// diff lists every key where got differs from want ("hairpinning = false,
// want true").
func diff(got, want Verdict) []string {
	var d []string
	w := want.fields()
	for i, g := range got.fields() {
		if g[1] != w[i][1] {
			d = append(d, fmt.Sprintf("%s = %s, want %s", g[0], g[1], w[i][1]))
		}
	}
	return d
}

// addressMismatches checks detect's local and mapped addresses against the
// lab: the local IP is the host's, the mapped IP the NAT's WAN (the host's
// own without a NAT); with UDP blocked there is no mapped address.
func addressMismatches(n *natlab.NAT, h *natlab.Host, hr HostReport) []string {
	e := n.Spec().Expect
	if e.NATType == natlab.TypeUDPBlocked {
		if hr.MappedAddress != nil {
			return []string{fmt.Sprintf("mapped_address = %s, want null", *hr.MappedAddress)}
		}
		return nil
	}
	var d []string
	if local, err := netip.ParseAddrPort(str(hr.LocalAddress)); err != nil || local.Addr() != h.Addr() {
		d = append(d, fmt.Sprintf("local_address = %s, want %s:PORT", str(hr.LocalAddress), h.Addr()))
	}
	want := n.WAN()
	if !e.BehindNAT {
		want = h.Addr()
	}
	if mapped, err := netip.ParseAddrPort(str(hr.MappedAddress)); err != nil || mapped.Addr() != want {
		d = append(d, fmt.Sprintf("mapped_address = %s, want %s:PORT", str(hr.MappedAddress), want))
	}
	return d
}

// detectAll runs natkit detect in every host: the NATs at once, the hosts
// behind one NAT one after the other (two detections through one NAT at a
// time would mix their port-allocation samples). done is called, from
// this goroutine, after each host with the number of hosts finished.
func detectAll(ctx context.Context, l *natlab.Lab, exe, server string, done func(finished, total int)) Report {
	r := Report{LabID: l.ID(), Server: server, OK: true}
	for _, ip := range l.Server().Addrs() {
		r.ServerAddresses = append(r.ServerAddresses, ip.String())
	}
	finished := make(chan struct{})
	total := 0
	for _, n := range l.NATs() {
		nr := NATReport{Name: n.Spec().Name, Label: n.Label(), WANAddress: n.WAN().String(),
			Expected: expected(n.Spec().Expect), Hosts: make([]HostReport, len(n.Hosts()))}
		r.NATs = append(r.NATs, nr)
		total += len(nr.Hosts)
		go func() {
			for i, h := range n.Hosts() {
				nr.Hosts[i] = detectHost(ctx, n, h, exe, server)
				finished <- struct{}{}
			}
		}()
	}
	for i := range total {
		<-finished
		done(i+1, total)
	}
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

// detectHost runs natkit detect --json in h and compares its report with
// what n should do.
func detectHost(ctx context.Context, n *natlab.NAT, h *natlab.Host, exe, server string) HostReport {
	hr := HostReport{Name: h.Name(), Namespace: h.NS(), Address: h.Addr().String(), Mismatches: []string{}}
	ctx, cancel := context.WithTimeout(ctx, detectTimeout)
	defer cancel()
	cmd := h.Command(ctx, exe, "detect", "--json", "--server", server)
	stderr := &syncWriter{}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	code := 0
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	var rep detect.Report
	if jerr := json.Unmarshal(out, &rep); jerr != nil || rep.Schema != "natkit.detect/v1" {
		msg := fmt.Sprintf("natkit detect gave no report: %v", err)
		if code > 0 {
			msg = fmt.Sprintf("natkit detect exited %d without a report", code)
		}
		if line := stderr.lastLine(); line != "" {
			msg += ": " + line
		}
		hr.Error = &msg
		return hr
	}
	hr.LocalAddress, hr.MappedAddress = rep.LocalAddress, rep.MappedAddress
	hr.Detect = &DetectView{Verdict: reported(rep), Summary: rep.Summary, Reasons: rep.Reasons,
		DurationMs: rep.DurationMs, ExitCode: code}
	hr.Mismatches = append(hr.Mismatches, diff(hr.Detect.Verdict, expected(n.Spec().Expect))...)
	hr.Mismatches = append(hr.Mismatches, addressMismatches(n, h, hr)...)
	hr.AsExpected = len(hr.Mismatches) == 0
	return hr
}

// mismatchLines are the report's mismatches, one line each, with detect's
// reasons.
func mismatchLines(r Report) []string {
	var lines []string
	for _, n := range r.NATs {
		for _, h := range n.Hosts {
			host := n.Label + " " + strings.TrimPrefix(h.Name, n.Label+"-")
			switch {
			case h.Error != nil:
				lines = append(lines, fmt.Sprintf("%s: %s", host, *h.Error))
			case len(h.Mismatches) > 0:
				line := fmt.Sprintf("%s: %s", host, strings.Join(h.Mismatches, "; "))
				if len(h.Detect.Reasons) > 0 {
					line += " (detect: " + strings.Join(h.Detect.Reasons, "; ") + ")"
				}
				lines = append(lines, line)
			}
		}
	}
	return lines
}
