package lab

import (
	"fmt"
	"strings"

	"github.com/natkit/natkit/pkg/natlab"
	"github.com/natkit/natkit/pkg/render"
)

// Report is the JSON document of `natkit lab --json` (natkit.lab/v1).
type Report struct {
	render.Envelope
	Action          string        `json:"action"` // "run", "down" or "list"
	LabID           string        `json:"lab_id,omitempty"`
	Kept            bool          `json:"kept"`
	Server          string        `json:"server,omitempty"`
	ServerAddresses []string      `json:"server_addresses,omitempty"`
	OK              bool          `json:"ok"`
	Hosts           int           `json:"hosts"`
	HostsAsExpected int           `json:"hosts_as_expected"`
	NATs            []NATReport   `json:"nats,omitempty"`
	Removed         *int          `json:"removed,omitempty"` // namespaces removed by --down
	Catalogue       []natlab.Spec `json:"catalogue,omitempty"`
	// Punch is the --punch matrix.
	Punch      *PunchMatrix `json:"punch,omitempty"`
	DurationMs int64        `json:"duration_ms"`
}

// NATReport is one NAT of the lab with what its hosts saw.
type NATReport struct {
	Name       string             `json:"name"`
	Label      string             `json:"label"`
	WANAddress string             `json:"wan_address"`
	Expected   natlab.Expectation `json:"expected"`
	Hosts      []HostReport       `json:"hosts"`
}

// HostReport is natkit probe's answer in one host.
type HostReport struct {
	Name          string   `json:"name"`
	Namespace     string   `json:"namespace"`
	Address       string   `json:"address"`
	Success       bool     `json:"success"`
	LocalAddress  *string  `json:"local_address"`
	MappedAddress *string  `json:"mapped_address"`
	RTTMs         *float64 `json:"rtt_ms"`
	Error         *string  `json:"error"`
	AsExpected    bool     `json:"as_expected"`
}

func str(p *string) string {
	if p == nil || *p == "" {
		return "-"
	}
	return *p
}

func renderReport(opts *Options, r Report) error {
	r.Envelope, r.Action = render.NewEnvelope("lab"), "run"
	if opts.Globals.JSON {
		return render.JSON(opts.IO.Out, r)
	}
	cs := opts.IO.ColorScheme()
	verdict := cs.Green(fmt.Sprintf("lab %s: %d/%d hosts behaved as their NAT should", r.LabID, r.HostsAsExpected, r.Hosts))
	if !r.OK {
		verdict = cs.Red(fmt.Sprintf("lab %s: only %d/%d hosts behaved as their NAT should", r.LabID, r.HostsAsExpected, r.Hosts))
	}
	if p := r.Punch; p != nil {
		verdict += fmt.Sprintf("; punch (%s): %d/%d pairs connected", p.Mode, p.Connected, len(p.Pairs))
	}
	fmt.Fprintln(opts.IO.Out, verdict)
	fmt.Fprintf(opts.IO.Out, "server %s (also %s)\n\n", r.Server, strings.Join(r.ServerAddresses[1:], ", "))
	rows := [][]string{{"NAT", "HOST", "LOCAL", "MAPPED", "EXPECTED", "OK"}}
	for _, n := range r.NATs {
		e := n.Expected
		want := fmt.Sprintf("%s (mapping %s, filtering %s)", e.NATType, e.Mapping, e.Filtering)
		for _, h := range n.Hosts {
			local := str(h.LocalAddress)
			if local == "-" || strings.HasPrefix(local, "0.0.0.0:") {
				local = h.Address
			}
			mapped := str(h.MappedAddress)
			if !h.Success {
				mapped = "no answer"
				if h.Error != nil {
					mapped += ": " + *h.Error
				}
			}
			ok := cs.Green("yes")
			if !h.AsExpected {
				ok = cs.Red("NO")
			}
			rows = append(rows, []string{n.Label, h.Name, local, mapped, want, ok})
		}
	}
	if err := render.Table(opts.IO.Out, rows); err != nil {
		return err
	}
	if r.Punch != nil {
		if err := renderPunch(opts.IO.Out, r.Punch); err != nil {
			return err
		}
	}
	if r.Kept {
		fmt.Fprintf(opts.IO.Out, "\nkept: ip netns list | grep natkit-%s; remove with: natkit lab --down\n", r.LabID)
	}
	return nil
}

func renderDown(opts *Options, n int) error {
	if opts.Globals.JSON {
		return render.JSON(opts.IO.Out, Report{Envelope: render.NewEnvelope("lab"), Action: "down", OK: true, Removed: &n})
	}
	_, err := fmt.Fprintf(opts.IO.Out, "removed %d natkit namespaces\n", n)
	return err
}

func renderCatalogue(opts *Options, specs []natlab.Spec) error {
	if opts.Globals.JSON {
		return render.JSON(opts.IO.Out, Report{Envelope: render.NewEnvelope("lab"), Action: "list", OK: true, Catalogue: specs})
	}
	rows := [][]string{{"NAME", "NAT TYPE", "MAPPING", "FILTERING", "HAIRPIN", "PORTS", "LAYERS"}}
	for _, s := range specs {
		e := s.Expect
		ports := e.PortAllocation
		if e.PortDelta != 0 {
			ports += fmt.Sprintf(" (+%d)", e.PortDelta)
		}
		layers := fmt.Sprint(e.NATLayers)
		if e.CGNAT {
			layers += " (CGNAT)"
		}
		rows = append(rows, []string{s.Name, e.NATType, e.Mapping, e.Filtering, fmt.Sprint(s.Hairpin), ports, layers})
	}
	return render.Table(opts.IO.Out, rows)
}
