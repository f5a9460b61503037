package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/natlab"
)

// detectTimeout bounds one `natkit detect` in one host: its own default
// timeout (15 s; under 3.5 s even with UDP blocked) and the process start.
const detectTimeout = 30 * time.Second

// DetectView is what natkit detect reported in one host: the verdict and
// why.
type DetectView struct {
	detect.Classification
	Summary    string   `json:"summary"`
	Reasons    []string `json:"reasons"`
	DurationMs float64  `json:"duration_ms"`
	ExitCode   int      `json:"exit_code"`
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
			Expected: n.Spec().Expect.Detect(), Hosts: make([]HostReport, len(n.Hosts()))}
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
	hr.Detect = &DetectView{Classification: rep.Classification(), Summary: rep.Summary, Reasons: rep.Reasons,
		DurationMs: rep.DurationMs, ExitCode: code}
	hr.Mismatches = append(hr.Mismatches, hr.Detect.Diff(n.Spec().Expect.Detect())...)
	hr.Mismatches = append(hr.Mismatches, n.AddressMismatches(h, hr.LocalAddress, hr.MappedAddress)...)
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
