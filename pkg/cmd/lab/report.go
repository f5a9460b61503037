package lab

import (
	"fmt"
	"io"
	"strings"

	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/render"
)

// Report is the JSON document of `natkit lab --json` (natkit.lab/v1).
type Report struct {
	render.Envelope
	Action          string   `json:"action"` // "run", "down" or "list"
	LabID           string   `json:"lab_id,omitempty"`
	Kept            bool     `json:"kept"`
	Server          string   `json:"server,omitempty"`
	ServerAddresses []string `json:"server_addresses,omitempty"`
	// OK is true when natkit detect was right behind every NAT and every
	// punch run and call gave a report.
	OK bool `json:"ok"`
	// Hosts counts the hosts natkit detect ran in; HostsAsExpected those
	// where it reported what the NAT does.
	Hosts           int              `json:"hosts"`
	HostsAsExpected int              `json:"hosts_as_expected"`
	NATs            []NATReport      `json:"nats,omitempty"`
	Removed         *int             `json:"removed,omitempty"` // namespaces removed by --down
	Catalogue       []CatalogueEntry `json:"catalogue,omitempty"`
	// Punch is the punch matrix; absent with --punch=false.
	Punch *PunchMatrix `json:"punch,omitempty"`
	// SIP is the call to the PBX's delayed echo from behind each NAT;
	// absent with --sip=false.
	SIP        *SIPRow `json:"sip,omitempty"`
	DurationMs int64   `json:"duration_ms"`
	// Labs are the labs --down removed; Unrecorded the ids of natkit
	// namespaces on the machine of labs natkit has no record of (an older
	// natkit's), which --down leaves alone.
	Labs       []DownLab `json:"labs,omitempty"`
	Unrecorded []string  `json:"unrecorded_labs,omitempty"`
}

// CatalogueEntry is one NAT of the catalogue (--list): its name and what
// natkit detect must report behind it.
type CatalogueEntry struct {
	Name     string                `json:"name"`
	Expected detect.Classification `json:"expected"`
}

// NATReport is one NAT of the lab: what natkit detect must report behind
// it, and what it reported in each host.
type NATReport struct {
	Name       string                `json:"name"`
	Label      string                `json:"label"`
	WANAddress string                `json:"wan_address"`
	Expected   detect.Classification `json:"expected"`
	Hosts      []HostReport          `json:"hosts"`
}

// HostReport is natkit detect's answer in one host, compared with the NAT's
// expected verdict.
type HostReport struct {
	Name          string  `json:"name"`
	Namespace     string  `json:"namespace"`
	Address       string  `json:"address"`
	LocalAddress  *string `json:"local_address"`
	MappedAddress *string `json:"mapped_address"`
	// Detect is null when natkit detect gave no report (Error says why).
	Detect *DetectView `json:"detect"`
	// Mismatches are the keys where detect differs from the NAT's
	// expected verdict, and wrong addresses ("nat_type = symmetric, want
	// full-cone").
	Mismatches []string `json:"mismatches"`
	Error      *string  `json:"error"`
	AsExpected bool     `json:"as_expected"`
}

func str(p *string) string {
	if p == nil || *p == "" {
		return "-"
	}
	return *p
}

// Short forms of the RFC 4787 behaviours for the table.
var behaviorAbbrev = map[string]string{
	natlab.EndpointIndependent:     "EI",
	natlab.AddressDependent:        "AD",
	natlab.AddressAndPortDependent: "APD",
	natlab.Unknown:                 "?",
}

func abbrev(b string) string {
	if a, ok := behaviorAbbrev[b]; ok {
		return a
	}
	return b
}

func yesNo(b *bool) string {
	switch {
	case b == nil:
		return "-"
	case *b:
		return "yes"
	}
	return "no"
}

func ports(v detect.Classification) string {
	if v.PortDelta != nil {
		return fmt.Sprintf("%s %+d", v.PortAllocation, *v.PortDelta)
	}
	return v.PortAllocation
}

func layers(v detect.Classification) string {
	if v.NATLayers == nil {
		return "-"
	}
	s := fmt.Sprint(*v.NATLayers)
	if v.CGNAT != nil && *v.CGNAT {
		s += " CGNAT"
	}
	return s
}

// verdictCells are the table's cells for v: type, mapping, filtering,
// hairpinning, ports and layers.
func verdictCells(v detect.Classification) []string {
	return []string{v.NATType, abbrev(v.MappingBehavior), abbrev(v.FilteringBehavior), yesNo(v.Hairpinning), ports(v), layers(v)}
}

func renderReport(opts *Options, r Report) error {
	r.Envelope, r.Action = render.NewEnvelope("lab"), "run"
	if opts.Globals.JSON {
		return render.JSON(opts.IO.Out, r)
	}
	w := opts.IO.Out
	cs := opts.IO.ColorScheme()
	verdict := cs.Green(fmt.Sprintf("lab %s: natkit detect classified all %d hosts as their NAT should be", r.LabID, r.Hosts))
	if r.HostsAsExpected != r.Hosts {
		verdict = cs.Red(fmt.Sprintf("lab %s: natkit detect was right in only %d/%d hosts", r.LabID, r.HostsAsExpected, r.Hosts))
	}
	if p := r.Punch; p != nil {
		verdict += fmt.Sprintf("; punch (%s): %d/%d pairs connected", p.Mode, p.Connected, len(p.Pairs))
		if !p.OK {
			verdict += cs.Red(" (some runs gave no report)")
		}
	}
	if s := r.SIP; s != nil {
		verdict += fmt.Sprintf("; sip: %d/%d calls answered", s.Answered, len(s.Calls))
		if !s.OK {
			verdict += cs.Red(" (some calls gave no report)")
		}
	}
	fmt.Fprintln(w, verdict)
	fmt.Fprintf(w, "server %s (also %s)\n\n", r.Server, strings.Join(r.ServerAddresses[1:], ", "))
	fmt.Fprintf(w, "natkit detect behind each NAT; a wrong value shows what the NAT does after ≠\n")
	rows := [][]string{{"NAT", "HOST", "LOCAL", "MAPPED", "NAT TYPE", "MAPPING", "FILTERING", "HAIRPIN", "PORTS", "LAYERS", "OK"}}
	for _, n := range r.NATs {
		want := verdictCells(n.Expected)
		for _, h := range n.Hosts {
			row := []string{n.Label, strings.TrimPrefix(h.Name, n.Label+"-"), str(h.LocalAddress), str(h.MappedAddress)}
			if h.Detect == nil {
				row = append(row, "no report", "", "", "", "", "")
			} else {
				for i, got := range verdictCells(h.Detect.Classification) {
					if got != want[i] { // plain: colour codes would upset the alignment
						got += " ≠ " + want[i]
					}
					row = append(row, got)
				}
			}
			ok := cs.Green("yes")
			if !h.AsExpected {
				ok = cs.Red("NO")
			}
			rows = append(rows, append(row, ok))
		}
	}
	if err := render.Table(w, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "(EI endpoint-independent, AD address-dependent, APD address-and-port-dependent; - null)")
	if lines := mismatchLines(r); len(lines) > 0 {
		fmt.Fprintf(w, "mismatches:\n  %s\n", strings.Join(lines, "\n  "))
	}
	if r.Punch != nil {
		if err := renderPunch(w, r.Punch); err != nil {
			return err
		}
	}
	if r.SIP != nil {
		if err := renderSIP(w, r.SIP); err != nil {
			return err
		}
	}
	if r.Kept {
		fmt.Fprintf(w, "\nkept: ip netns list | grep natkit-%s; remove with: natkit lab --down %s\n", r.LabID, r.LabID)
	}
	return nil
}

func renderDown(opts *Options, d downResult) error {
	if opts.Globals.JSON {
		r := Report{Envelope: render.NewEnvelope("lab"), Action: "down", OK: true, Removed: &d.removed, Labs: d.labs, Unrecorded: d.unrecorded}
		if len(d.labs) == 1 {
			r.LabID = d.labs[0].ID
		}
		return render.JSON(opts.IO.Out, r)
	}
	var b strings.Builder
	for _, l := range d.labs {
		fmt.Fprintf(&b, "removed lab %s (%d namespaces)\n", l.ID, l.Namespaces)
	}
	if len(d.labs) == 0 {
		what := "no lab of yours is recorded"
		if opts.All {
			what = "no lab is recorded"
		}
		fmt.Fprintf(&b, "%s: nothing removed (natkit lab --down ID removes lab ID)\n", what)
	}
	if len(d.unrecorded) > 0 {
		fmt.Fprintf(&b, "left alone: natkit namespaces of labs natkit has no record of: %s (natkit lab --down ID removes lab ID)\n",
			strings.Join(d.unrecorded, ", "))
	}
	_, err := io.WriteString(opts.IO.Out, b.String())
	return err
}

func renderCatalogue(opts *Options, specs []natlab.Spec) error {
	if opts.Globals.JSON {
		entries := make([]CatalogueEntry, 0, len(specs))
		for _, s := range specs {
			entries = append(entries, CatalogueEntry{Name: s.Name, Expected: s.Expect.Detect()})
		}
		return render.JSON(opts.IO.Out, Report{Envelope: render.NewEnvelope("lab"), Action: "list", OK: true, Catalogue: entries})
	}
	rows := [][]string{{"NAME", "NAT TYPE", "MAPPING", "FILTERING", "HAIRPIN", "PORTS", "LAYERS"}}
	for _, s := range specs {
		e := s.Expect
		ports := e.PortAllocation
		if e.PortDelta != 0 {
			ports += fmt.Sprintf(" (%+d)", e.PortDelta)
		}
		layers := fmt.Sprint(e.NATLayers)
		if e.CGNAT {
			layers += " (CGNAT)"
		}
		rows = append(rows, []string{s.Name, e.NATType, e.Mapping, e.Filtering, fmt.Sprint(s.Hairpin), ports, layers})
	}
	return render.Table(opts.IO.Out, rows)
}
