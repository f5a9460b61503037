package report

import (
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"sync"
)

// Redacted replaces a secret wherever it would appear.
const Redacted = "[redacted]"

// restUsername is a TURN REST username (RFC draft-uberti-behave-turn-rest,
// as coturn takes it): an expiry timestamp, ':', the user. With the
// password it is a credential, so it is redacted with it.
var restUsername = regexp.MustCompile(`^[0-9]{9,}:`)

// Redactor replaces known secrets in strings, documents and streams.
type Redactor struct {
	secrets []string
}

// NewRedactor returns a Redactor for the non-empty secrets.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if s != "" {
			r.secrets = append(r.secrets, s)
		}
	}
	return r
}

// String returns s with every secret replaced by Redacted.
func (r *Redactor) String(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, Redacted)
	}
	return s
}

// Report returns rep with every string value that holds a secret
// redacted, whichever engine's report it came from: the document goes
// through JSON, its keys untouched.
func (r *Redactor) Report(rep Report) (Report, error) {
	if len(r.secrets) == 0 {
		return rep, nil
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return rep, err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return rep, err
	}
	doc = r.value(doc)
	if b, err = json.Marshal(doc); err != nil {
		return rep, err
	}
	var out Report
	err = json.Unmarshal(b, &out)
	return out, err
}

func (r *Redactor) value(v any) any {
	switch v := v.(type) {
	case string:
		return r.String(v)
	case map[string]any:
		for k, e := range v {
			v[k] = r.value(e)
		}
	case []any:
		for i, e := range v {
			v[i] = r.value(e)
		}
	}
	return v
}

// Writer returns w with every secret replaced in what is written. Each
// Write is redacted on its own: slog writes a record at once.
func (r *Redactor) Writer(w io.Writer) io.Writer {
	if len(r.secrets) == 0 {
		return w
	}
	return &redactWriter{r: r, w: w}
}

type redactWriter struct {
	mu sync.Mutex
	r  *Redactor
	w  io.Writer
}

func (rw *redactWriter) Write(p []byte) (int, error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if _, err := io.WriteString(rw.w, rw.r.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
