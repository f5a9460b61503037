// Package render writes reports: the JSON envelope every command shares and
// small helpers for aligned human-readable text.
package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/natkit/natkit/pkg/buildinfo"
)

// Envelope opens every JSON document natkit prints. Reports embed it first so
// that "schema" and "natkit_version" lead the document.
type Envelope struct {
	Schema        string `json:"schema"`
	NatkitVersion string `json:"natkit_version"`
}

// NewEnvelope returns the envelope for a command's report, e.g. "probe" gives
// schema "natkit.probe/v1".
func NewEnvelope(command string) Envelope {
	return Envelope{Schema: "natkit." + command + "/v1", NatkitVersion: buildinfo.Version()}
}

// JSON writes v as one indented JSON document followed by a newline.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// Table writes rows as aligned columns separated by two spaces.
func Table(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if _, err := fmt.Fprintln(tw, strings.Join(r, "\t")); err != nil {
			return err
		}
	}
	return tw.Flush()
}
