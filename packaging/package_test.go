// Package packaging holds what installs natkit on a Linux host: the nfpm
// configuration of the deb and rpm (nfpm.yaml), the natkit-serve systemd
// unit and the package scripts. Its test builds the packages as a release
// would and walks a newcomer's first hour with the deb.
package packaging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// nfpmModule is the nfpm the test builds packages with (goreleaser's own
// packager), fetched from the Go module proxy.
const nfpmModule = "github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0"

// version is the package version the test stamps.
const version = "1.2.3"

// e2e: as root under scripts/test.sh, nothing may skip.
var e2e = os.Getenv("NATKIT_E2E") == "1"

func need(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if e2e {
			t.Fatalf("%s is missing (NATKIT_E2E=1: nothing skips)", tool)
		}
		t.Skipf("%s is missing", tool)
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// build makes dist/ as a release does — the binary with its version,
// commit and date, the man pages and completions — and the deb and rpm.
func build(t *testing.T) (root, dist string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// nfpm reads its sources relative to the working directory: a staging
	// copy of what nfpm.yaml names, so that the test never writes into the
	// repository.
	stage := t.TempDir()
	for _, f := range []string{"packaging/nfpm.yaml", "packaging/natkit-serve.service", "packaging/postinstall.sh", "packaging/preremove.sh", "docs/serve.yaml", "README.md"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(stage, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stage, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dist = filepath.Join(stage, "dist")
	ld := "-s -w -X github.com/natkit/natkit/pkg/buildinfo.version=" + version +
		" -X github.com/natkit/natkit/pkg/buildinfo.commit=0123abc -X github.com/natkit/natkit/pkg/buildinfo.date=2026-12-05T00:00:00Z"
	run(t, root, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags", ld, "-o", filepath.Join(dist, "natkit"), "./cmd/natkit")
	run(t, root, nil, "go", "run", "./scripts/gendocs", dist)
	for _, packager := range []string{"deb", "rpm"} {
		run(t, stage, []string{"GOARCH=amd64", "VERSION=" + version}, "go", "run", nfpmModule,
			"pkg", "--packager", packager, "--config", "packaging/nfpm.yaml", "--target", dist+"/")
	}
	return root, dist
}

// TestPackages builds the deb and the rpm, checks what the deb installs,
// verifies the unit, and runs the installed files as the unit would: the
// example config edited as a newcomer would edit it, --check-config, the
// service, its health, metrics and logs, a STUN probe and a TURN check
// against it. Here the unit is not started by systemd (a test does not
// install packages on its host): the deb is unpacked in a temporary
// directory and the unit's ExecStartPre and ExecStart command lines run
// from there. TestSystemdUnit installs the deb on a Debian booted with
// systemd as PID 1 in a container and runs the unit itself.
func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds packages")
	}
	need(t, "dpkg-deb")
	_, dist := build(t)
	deb := filepath.Join(dist, "natkit_"+version+"_amd64.deb")
	rpm := filepath.Join(dist, "natkit-"+version+"-1.x86_64.rpm")
	for _, p := range []string{deb, rpm} {
		if st, err := os.Stat(p); err != nil || st.Size() < 1<<20 {
			t.Fatalf("package %s: %v", p, err)
		}
	}

	// What the deb installs.
	list := run(t, "", nil, "dpkg-deb", "-c", deb)
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/bin/natkit$",
		"-rw-r--r-- root/root .* ./usr/lib/systemd/system/natkit-serve.service$",
		"-rw-r----- root/root .* ./etc/natkit/serve.yaml$",
		"./usr/share/man/man1/natkit.1.gz$",
		"./usr/share/man/man1/natkit-serve.1.gz$",
		"./usr/share/man/man1/natkit-detect.1.gz$",
		"./usr/share/bash-completion/completions/natkit$",
		"./usr/share/zsh/vendor-completions/_natkit$",
		"./usr/share/fish/vendor_completions.d/natkit.fish$",
		"./usr/share/doc/natkit/README.md$",
	} {
		if !matchLine(list, want) {
			t.Errorf("the deb has no line matching %q:\n%s", want, list)
		}
	}
	info := run(t, "", nil, "dpkg-deb", "-I", deb)
	for _, want := range []string{"Package: natkit", "Version: " + version, "Architecture: amd64", "postinst", "prerm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	if cf := run(t, "", nil, "sh", "-c", "dpkg-deb --ctrl-tarfile "+deb+" | tar -xOf - ./conffiles"); strings.TrimSpace(cf) != "/etc/natkit/serve.yaml" {
		t.Errorf("conffiles: %q, want the config kept on upgrade", cf)
	}

	root := t.TempDir()
	run(t, "", nil, "dpkg-deb", "-x", deb, root)
	bin := filepath.Join(root, "usr/bin/natkit")
	if out := run(t, "", nil, bin, "--version"); !strings.HasPrefix(out, "natkit "+version+" (commit 0123abc, built 2026-12-05T00:00:00Z, ") {
		t.Errorf("natkit --version: %q", out)
	}

	unit, err := os.ReadFile(filepath.Join(root, "usr/lib/systemd/system/natkit-serve.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"User=natkit", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "ProtectSystem=strict", "StateDirectory=natkit", "NoNewPrivileges=yes",
		"ExecStart=/usr/bin/natkit serve --config /etc/natkit/serve.yaml"} {
		if !matchLine(string(unit), "^"+regexp.QuoteMeta(want)+"$") {
			t.Errorf("the unit lacks %q", want)
		}
	}
	// systemd-analyze checks the unit offline; it wants ExecStart's binary
	// where the unit says, so the unpacked one stands in.
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		local := filepath.Join(t.TempDir(), "natkit-serve.service")
		if err := os.WriteFile(local, bytes.ReplaceAll(unit, []byte("/usr/bin/natkit"), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, "", nil, "systemd-analyze", "verify", "--man=no", local)
	} else {
		t.Log("systemd-analyze is not installed: the unit is not verified")
	}

	// A newcomer's edit of the example config: new passwords, and (for a
	// test) loopback, free ports and a state directory of its own.
	cfgPath := filepath.Join(root, "etc/natkit/serve.yaml")
	var cfg map[string]any
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("the example config: %v", err)
	}
	users, _ := cfg["user"].([]any)
	if len(users) != 20 {
		t.Fatalf("the example config has %d accounts, want 1000-1019", len(users))
	}
	for i := range users {
		users[i] = fmt.Sprintf("%d:newcomer-secret-%d", 1000+i, 1000+i)
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	var s *service
	for try := 1; s == nil; try++ {
		ports := freePorts(t, 6)
		cfg["listen"] = "127.0.0.1"
		cfg["alt-ip"] = "127.0.0.2" // the second address RFC 5780 detection needs
		cfg["stun-port"], cfg["stun-alt-port"], cfg["rendezvous-port"], cfg["sip-port"] = ports[0], ports[1], ports[2], ports[3]
		cfg["sip-tls-port"] = 0
		cfg["http"] = fmt.Sprintf("127.0.0.1:%d", ports[4])
		cfg["relay-ports"] = "30000-30999"
		cfg["media-ports"] = "31000-31999"
		cfg["state-dir"] = stateDir
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfgPath, out, 0o640); err != nil {
			t.Fatal(err)
		}
		// ExecStartPre.
		run(t, "", nil, bin, "serve", "--config", cfgPath, "--check-config")
		// ExecStart.
		var inUse bool
		s, inUse = startService(t, bin, cfgPath, ports[4])
		if s == nil && (!inUse || try == 5) {
			t.Fatal("natkit serve did not start")
		}
	}
	stun := fmt.Sprintf("127.0.0.1:%d", cfg["stun-port"])

	metrics := get(t, s.http+"/metrics")
	for _, want := range []string{`natkit_build_info{`, `revision="0123abc"`, `version="` + version + `"`, "natkit_stun_"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if out := run(t, "", nil, bin, "probe", "--json", stun); !strings.Contains(out, `"mapped_address": "127.0.0.1:`) {
		t.Errorf("natkit probe against the service:\n%s", out)
	}
	run(t, "", nil, bin, "turn", "--json", "--server", stun, "--user", "1000", "--password", "newcomer-secret-1000")

	// What support asks for: natkit report against the service, with the
	// passwords from the environment, written to a file for the ticket.
	reportPath := filepath.Join(t.TempDir(), "report.json")
	out := run(t, "", []string{"NATKIT_TURN_PASSWORD=newcomer-secret-1001", "NATKIT_SIP_PASSWORD=newcomer-secret-1002"},
		bin, "report", "--json", "--output", reportPath, "--server", stun,
		"--turn", "turn:1001@"+stun, "--sip", fmt.Sprintf("sip:1002@127.0.0.1:%d", cfg["sip-port"]), "--sip-duration", "3s")
	var rep struct {
		Schema  string `json:"schema"`
		Verdict string `json:"verdict"`
		Parts   []struct {
			Name, Verdict string
		} `json:"parts"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("natkit report --json: %v\n%s", err, out)
	}
	var parts []string
	for _, p := range rep.Parts {
		parts = append(parts, p.Name+":"+p.Verdict)
	}
	if rep.Schema != "natkit.report/v1" || rep.Verdict != "good" || !slices.Contains(parts, "turn:good") || !slices.Contains(parts, "sip:good") {
		t.Errorf("natkit report against the service: %s %s %v", rep.Schema, rep.Verdict, parts)
	}
	if saved, err := os.ReadFile(reportPath); err != nil || string(saved) != out {
		t.Errorf("--output: %v (%d bytes, stdout %d)", err, len(saved), len(out))
	}
	if strings.Contains(out, "newcomer-secret") {
		t.Error("a password reached the report")
	}

	logs := s.stop(t)
	for _, want := range []string{"stun: listening on udp 127.0.0.1:", "turn: realm \"natkit\", 20 users"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the service's log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "newcomer-secret") || strings.Contains(metrics, "newcomer-secret") {
		t.Error("a password reached the log or the metrics")
	}
}

// TestGoreleaserNfpm: goreleaser's nfpms section packages what
// packaging/nfpm.yaml does (one list of contents in two formats).
func TestGoreleaserNfpm(t *testing.T) {
	type content struct {
		Src  string `yaml:"src"`
		Dst  string `yaml:"dst"`
		Type string `yaml:"type"`
	}
	var nfpm struct {
		Contents []content         `yaml:"contents"`
		Scripts  map[string]string `yaml:"scripts"`
	}
	var gr struct {
		Nfpms []struct {
			Formats  []string          `yaml:"formats"`
			Contents []content         `yaml:"contents"`
			Scripts  map[string]string `yaml:"scripts"`
		} `yaml:"nfpms"`
	}
	for path, v := range map[string]any{"nfpm.yaml": &nfpm, "../.goreleaser.yaml": &gr} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if len(gr.Nfpms) != 1 || !slices.Equal(gr.Nfpms[0].Formats, []string{"deb", "rpm"}) {
		t.Fatalf(".goreleaser.yaml nfpms: %+v, want one entry for deb and rpm", gr.Nfpms)
	}
	g := gr.Nfpms[0]
	dst := func(cs []content) map[string]content {
		m := map[string]content{}
		for _, c := range cs {
			c.Src = filepath.Base(c.Src)
			m[c.Dst] = c
		}
		return m
	}
	a, b := dst(nfpm.Contents), dst(g.Contents)
	for d, c := range a {
		if c.Dst == "/usr/bin/natkit" {
			continue // goreleaser adds its build itself
		}
		if b[d] != c {
			t.Errorf("%s: nfpm.yaml has %+v, .goreleaser.yaml %+v", d, c, b[d])
		}
	}
	for d := range b {
		if _, ok := a[d]; !ok {
			t.Errorf("%s is in .goreleaser.yaml only", d)
		}
	}
	if fmt.Sprint(nfpm.Scripts) != fmt.Sprint(g.Scripts) {
		t.Errorf("scripts: nfpm.yaml %v, .goreleaser.yaml %v", nfpm.Scripts, g.Scripts)
	}
}

// service is natkit serve started from the unpacked package.
type service struct {
	cmd  *exec.Cmd
	http string
	logs *bytes.Buffer
	done chan error
}

// startService runs the unit's ExecStart and waits for /healthz. It
// returns nil and whether a port was taken meanwhile when it exits first.
func startService(t *testing.T, bin, cfg string, httpPort int) (*service, bool) {
	t.Helper()
	s := &service{http: fmt.Sprintf("http://127.0.0.1:%d", httpPort), logs: &bytes.Buffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve", "--config", cfg)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		select {
		case <-s.done:
			t.Logf("natkit serve exited:\n%s", s.logs)
			return nil, strings.Contains(s.logs.String(), "address already in use")
		default:
		}
		if r, err := http.Get(s.http + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				t.Cleanup(func() {
					if s.cmd.ProcessState == nil {
						s.cmd.Process.Kill()
						<-s.done
					}
				})
				return s, false
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.cmd.Process.Kill()
	<-s.done
	t.Fatalf("natkit serve did not become healthy:\n%s", s.logs)
	return nil, false
}

// stop sends SIGTERM, as stopping the unit does, and returns the logs.
func (s *service) stop(t *testing.T) string {
	t.Helper()
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("natkit serve on SIGINT: %v", err)
		}
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Error("natkit serve did not stop within 15 s")
	}
	return s.logs.String()
}

func get(t *testing.T, url string) string {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, r.StatusCode, err)
	}
	return string(b)
}

// freePorts returns n ports that were free on 127.0.0.1 for UDP and TCP a
// moment ago; startService is retried when one was taken meanwhile.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for len(ports) < n {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, pc)
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		held = append(held, ln)
		ports = append(ports, port)
	}
	return ports
}

func matchLine(text, pattern string) bool {
	re := regexp.MustCompile(pattern)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if re.MatchString(sc.Text()) {
			return true
		}
	}
	return false
}
