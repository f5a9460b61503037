package serve

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/natkit/natkit/pkg/golden"
)

// normalizeServe replaces what changes from run to run (ports, the
// version, the temporary directory) so that serve's documents compare with
// golden files.
func normalizeServe(s, tmp string) string {
	if tmp != "" {
		s = regexp.MustCompile(regexp.QuoteMeta(tmp)).ReplaceAllString(s, "TMP")
	}
	s = regexp.MustCompile(`"natkit_version": "[^"]*"`).ReplaceAllString(s, `"natkit_version": "VERSION"`)
	s = regexp.MustCompile(`(127\.0\.0\.\d):\d+`).ReplaceAllString(s, "$1:PORT")
	s = regexp.MustCompile(`("media_ports": \{\s*"min": )\d+(,\s*"max": )\d+`).ReplaceAllString(s, "${1}30000${2}30049")
	s = regexp.MustCompile(`ports \d+-\d+`).ReplaceAllString(s, "ports LOW-HIGH")
	return s
}

// TestStartupGolden pins the startup document (natkit.serve/v1) and the
// startup lines of a serve running every server: STUN, TURN over UDP, TCP
// and TLS, rendezvous, the PBX with a media relay and voicemail, and HTTP.
// testdata/schemas/serve.schema.json is checked against this golden by
// pkg/golden's TestGoldensMatchSchemas.
func TestStartupGolden(t *testing.T) {
	low := 30000 + (os.Getpid()%200)*50
	state := t.TempDir()
	args := append(turnArgs(t, "--state-dir", state, "--media-ports", fmt.Sprintf("%d-%d", low, low+49),
		"--user", "1001:secret1", "--sip-rate", "0", "--realm", "example.net", "--sip-domain", "pbx.example.net"),
		"--sip-port", pickPort) // turnArgs turned the PBX off; the last --sip-port wins
	s := startServe(t, args...)
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "startup.json", normalizeServe(s.stdout, state))
	// stderr: the startup lines, then whatever stopping printed; keep the
	// startup part, which ends at the http line.
	lines := regexp.MustCompile(`(?s)^.*?http: listening[^\n]*\n`).FindString(s.stderr)
	if lines == "" {
		t.Fatalf("no http line in stderr:\n%s", s.stderr)
	}
	golden.Check(t, "startup.txt", normalizeServe(lines, state))
}

// TestCheckConfigGolden pins `serve --check-config --json` (natkit.serve-check/v1).
func TestCheckConfigGolden(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1\nsip-port: 0\nuser:\n  - alice:wonderland\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err, out, errOut := run(t, t.Context(), true, nil, "--config", cfg, "--check-config")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	golden.Check(t, "check-config.json", normalizeServe(out, dir))
}
