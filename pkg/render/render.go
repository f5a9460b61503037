// Package render writes reports: the JSON envelope every command shares and
// small helpers for aligned human-readable text.
package render

import (
	"encoding/json"
	"io"

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
