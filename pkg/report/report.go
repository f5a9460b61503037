// Package report gathers everything a support engineer asks for into one
// document: the host's network environment and the reports of the probe,
// detect, TURN and SIP engines, each judged good or bad with one line of
// advice.
package report

import (
	"github.com/natkit/natkit/pkg/detect"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/sipua"
	"github.com/natkit/natkit/pkg/turnclient"
)

// Verdict is a part's result.
type Verdict string

// Verdicts.
const (
	Good    Verdict = "good"
	Bad     Verdict = "bad"
	Skipped Verdict = "skipped"
)

// Part names, in the order the report lists them.
const (
	PartEnvironment = "environment"
	PartProbe       = "probe"
	PartDetect      = "detect"
	PartTURN        = "turn"
	PartSIP         = "sip"
)

// Report is `natkit report --json` (schema natkit.report/v1). The engines'
// own reports are embedded as they are (natkit.probe/v1, natkit.detect/v1,
// natkit.turn/v1, natkit.call/v1); a part that did not run is null. Every
// secret the options held is redacted from every string in it.
type Report struct {
	render.Envelope
	// Verdict is good when every part that ran is good.
	Verdict Verdict `json:"verdict"`
	// Summary is the one-line verdict of the human output.
	Summary string `json:"summary"`
	// GeneratedAt is when the report started (RFC 3339, UTC).
	GeneratedAt string  `json:"generated_at"`
	DurationMs  float64 `json:"duration_ms"`
	// Parts are the verdicts, one per part, in a fixed order.
	Parts       []Part             `json:"parts"`
	Environment *Environment       `json:"environment"`
	Probe       *probe.Report      `json:"probe"`
	Detect      *detect.Report     `json:"detect"`
	TURN        *turnclient.Report `json:"turn"`
	SIP         *sipua.Report      `json:"sip"`
}

// Part is the verdict on one part of the report.
type Part struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	// Advice is what to do, in one line: first in the human output.
	Advice string `json:"advice"`
	// Finding is what was seen, in one line.
	Finding    string   `json:"finding"`
	DurationMs *float64 `json:"duration_ms"`
	// Error is why the engine could not run at all; null when it ran.
	Error *string `json:"error"`
}

// Good reports whether every part that ran is good.
func (r Report) Good() bool {
	for _, p := range r.Parts {
		if p.Verdict == Bad {
			return false
		}
	}
	return true
}
