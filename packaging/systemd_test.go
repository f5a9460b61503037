package packaging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestSystemdUnit is a newcomer's first hour on a fresh Debian machine, for
// real: a Debian 12 root file system (debootstrap, cached between runs on
// one machine) boots systemd as PID 1 in a container (systemd-nspawn
// --boot), the built deb is installed there with dpkg -i, the example
// config is edited, and the packaged unit — unchanged — is started,
// reloaded, inspected, stopped, and the package removed and purged. The
// container shares the host's network namespace (natkit listens on
// loopback ports picked free, one of them below 1024), so the test reads
// /healthz and /metrics from outside; the natkit commands a newcomer runs
// (turn, report) run inside the container, with the installed binary.
//
// It needs root (mounts, namespaces, cgroups) and NATKIT_E2E=1: the first
// run on a machine downloads about 40 MB of Debian packages.
func TestSystemdUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a container")
	}
	if !e2e || os.Geteuid() != 0 {
		t.Skip("boots systemd in a container: root and NATKIT_E2E=1 only")
	}
	for _, tool := range []string{"dpkg-deb", "debootstrap", "systemd-nspawn", "unshare", "nsenter"} {
		need(t, tool)
	}
	_, dist := build(t)
	rootfs := debianRootfs(t)
	c := bootContainer(t, rootfs, dist)

	// dpkg -i: the post-install script makes the user natkit and the
	// config readable by it only, and reloads systemd.
	out := c.run(t, nil, "dpkg", "-i", "/natkit-dist/natkit_"+version+"_amd64.deb")
	t.Logf("dpkg -i:\n%s", out)
	pw := strings.Split(strings.TrimSpace(c.run(t, nil, "getent", "passwd", "natkit")), ":")
	if len(pw) != 7 || pw[5] != "/var/lib/natkit" || pw[6] != "/usr/sbin/nologin" {
		t.Errorf("the user natkit: %q", pw)
	}
	uid, gid := pw[2], pw[3]
	if got := c.run(t, nil, "stat", "-c", "%U:%G %a", "/etc/natkit", "/etc/natkit/serve.yaml"); got != "root:natkit 750\nroot:natkit 640\n" {
		t.Errorf("/etc/natkit and its config:\n%s", got)
	}
	if got := strings.TrimSpace(c.run(t, nil, "systemctl", "show", "-p", "LoadState,UnitFileState", "natkit-serve")); got != "LoadState=loaded\nUnitFileState=disabled" {
		t.Errorf("after dpkg -i, systemctl show natkit-serve:\n%s", got)
	}

	// The newcomer's edit: new passwords; and, as this machine is shared,
	// loopback and free ports — STUN/TURN on one below 1024 as on a
	// production host's 443, which the user natkit binds only through the
	// unit's CAP_NET_BIND_SERVICE.
	if start, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err != nil || strings.TrimSpace(string(start)) != "1024" {
		t.Fatalf("net.ipv4.ip_unprivileged_port_start is %q (%v), not 1024: a port below 1024 would not show the capability", start, err)
	}
	cfgPath := filepath.Join(c.root(), "etc/natkit/serve.yaml")
	example, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(example, &cfg); err != nil {
		t.Fatalf("the example config: %v", err)
	}
	users, _ := cfg["user"].([]any)
	if len(users) != 20 {
		t.Fatalf("the example config has %d accounts, want 1000-1019", len(users))
	}
	for i := range users {
		users[i] = fmt.Sprintf("%d:newcomer-secret-%d", 1000+i, 1000+i)
	}
	writeConfig := func() {
		t.Helper()
		b, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// As an editor saves it: the file keeps its owner and mode.
		if err := os.WriteFile(cfgPath, b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	var httpURL string
	for try := 1; ; try++ {
		ports := append([]int{privilegedPort(t)}, freePorts(t, 4)...)
		cfg["listen"] = "127.0.0.1"
		cfg["alt-ip"] = "127.0.0.2"
		cfg["stun-port"], cfg["stun-alt-port"], cfg["rendezvous-port"], cfg["sip-port"] = ports[0], ports[1], ports[2], ports[3]
		cfg["sip-tls-port"] = 0 // no certificate yet
		cfg["http"] = fmt.Sprintf("127.0.0.1:%d", ports[4])
		writeConfig()
		httpURL = fmt.Sprintf("http://127.0.0.1:%d", ports[4])
		// ExecStartPre (--check-config) runs before systemctl start returns.
		c.run(t, nil, "systemctl", "start", "natkit-serve")
		if c.healthy(t, httpURL) {
			break
		}
		if try == 5 || !strings.Contains(c.journal(t), "address already in use") {
			t.Fatalf("natkit-serve did not become healthy:\n%s\n%s", c.output("systemctl", "status", "--no-pager", "natkit-serve"), c.journal(t))
		}
		t.Logf("try %d: a port was taken meanwhile; new ports", try)
		c.run(t, nil, "systemctl", "stop", "natkit-serve")
		c.run(t, nil, "systemctl", "reset-failed", "natkit-serve")
	}
	stun := fmt.Sprintf("127.0.0.1:%d", cfg["stun-port"])
	if got := strings.TrimSpace(c.run(t, nil, "systemctl", "is-active", "natkit-serve")); got != "active" {
		t.Errorf("systemctl is-active natkit-serve: %q", got)
	}
	show := c.run(t, nil, "systemctl", "show", "-p", "ExecStartPre", "-p", "MainPID", "-p", "NRestarts", "natkit-serve")
	if !matchLine(show, `^ExecStartPre=.*argv\[\]=/usr/bin/natkit serve --config /etc/natkit/serve.yaml --check-config ;.* code=exited ; status=0 }$`) || !matchLine(show, `^NRestarts=0$`) {
		t.Errorf("systemctl show natkit-serve: the check did not run, or the service restarted:\n%s", show)
	}
	mainPID := strings.TrimPrefix(firstLine(show, "MainPID="), "MainPID=")

	metrics := get(t, httpURL+"/metrics")
	for _, want := range []string{`natkit_build_info{`, `version="` + version + `"`, "natkit_stun_"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if out := c.run(t, nil, "natkit", "probe", "--json", stun); !strings.Contains(out, `"mapped_address": "127.0.0.1:`) {
		t.Errorf("natkit probe against the service:\n%s", out)
	}
	c.run(t, nil, "natkit", "turn", "--json", "--server", stun, "--user", "1000", "--password", "newcomer-secret-1000")

	// The unit's hardening, as the running process has it.
	status := c.run(t, nil, "cat", "/proc/"+mainPID+"/status")
	for _, want := range []string{
		fmt.Sprintf("Uid:\t%s\t%s\t%s\t%s", uid, uid, uid, uid),
		fmt.Sprintf("Gid:\t%s\t%s\t%s\t%s", gid, gid, gid, gid),
		"CapInh:\t0000000000000400", "CapPrm:\t0000000000000400", "CapEff:\t0000000000000400",
		"CapBnd:\t0000000000000400", "CapAmb:\t0000000000000400", // CAP_NET_BIND_SERVICE only
		"NoNewPrivs:\t1", "Seccomp:\t2",
	} {
		if !matchLine(status, "^"+want+"$") {
			t.Errorf("natkit-serve's /proc/%s/status lacks %q:\n%s", mainPID, want, status)
		}
	}
	// LimitNOFILE=65536, or the most systemd may give: without
	// CAP_SYS_RESOURCE (not in this machine's bounding set, so not in the
	// container's) nothing raises a hard limit above its own, and systemd
	// then sets the closest it can.
	nofile := 65536
	if h := hardNofile(t, c.run(t, nil, "cat", "/proc/1/limits")); h < nofile {
		t.Logf("the container's systemd has a hard RLIMIT_NOFILE of %d (this machine's): LimitNOFILE=65536 can give %d at most", h, h)
		nofile = h
	}
	if limits := c.run(t, nil, "cat", "/proc/"+mainPID+"/limits"); !matchLine(limits, fmt.Sprintf(`^Max open files +%d +%d +files`, nofile, nofile)) {
		t.Errorf("LimitNOFILE=65536 does not apply (want %d):\n%s", nofile, limits)
	}
	// The file system as the service sees it (its mount namespace, entered
	// as root, so that only the mounts, not permissions, say no):
	// read-only but for the state directory; a /tmp of its own.
	c.run(t, nil, "touch", "/tmp/natkit-outside")
	inService := func(args ...string) (string, error) {
		return c.runErr(nil, append([]string{"nsenter", "-t", mainPID, "-m", "--"}, args...)...)
	}
	for _, p := range []string{"/usr/bin/natkit-probe", "/etc/natkit/probe", "/var/lib/probe", "/root/probe"} {
		if out, err := inService("touch", p); err == nil || !strings.Contains(out, "Read-only file system") {
			t.Errorf("the service could write %s (ProtectSystem=strict, ProtectHome): %v %s", p, err, out)
		}
	}
	if out, err := inService("test", "-e", "/tmp/natkit-outside"); err == nil {
		t.Errorf("the service sees the machine's /tmp (PrivateTmp): %s", out)
	}
	if out, err := c.runErr(nil, "nsenter", "-t", mainPID, "-m", "-S", uid, "-G", gid, "--", "sh", "-c", "touch /var/lib/natkit/probe && rm /var/lib/natkit/probe"); err != nil {
		t.Errorf("the user natkit cannot write its state directory: %v %s", err, out)
	}
	if got := c.run(t, nil, "stat", "-c", "%U:%G %a", "/var/lib/natkit"); got != "natkit:natkit 750\n" {
		t.Errorf("StateDirectory /var/lib/natkit: %s", got)
	}

	// systemctl reload: an account added to the file works afterwards, in
	// the same process.
	turn3000 := []string{"natkit", "turn", "--json", "--server", stun, "--user", "3000", "--password", "reload-secret-3000"}
	if out, err := c.runErr(nil, turn3000...); err == nil {
		t.Fatalf("natkit turn with an account not yet in the config:\n%s", out)
	}
	cfg["user"] = append(users, "3000:reload-secret-3000")
	writeConfig()
	if out, err := c.runErr(nil, "systemctl", "reload", "natkit-serve"); err != nil {
		t.Fatalf("systemctl reload natkit-serve: %v\n%s\n%s", err, out, c.output("systemctl", "status", "--no-pager", "-n", "20", "natkit-serve"))
	}
	// ExecReload returns once SIGHUP is sent; the service logs when done.
	if !c.waitJournal(t, `turn_users=21`) {
		t.Fatalf("no reload in the journal:\n%s", c.journal(t))
	}
	c.run(t, nil, turn3000...)
	if pid := strings.TrimSpace(c.run(t, nil, "systemctl", "show", "-p", "MainPID", "--value", "natkit-serve")); pid != mainPID {
		t.Errorf("MainPID %s after reload, was %s: restarted, not reloaded", pid, mainPID)
	}

	// What support asks for: natkit report against the service.
	reportEnv := []string{"NATKIT_TURN_PASSWORD=newcomer-secret-1001", "NATKIT_SIP_PASSWORD=newcomer-secret-1002"}
	out = c.run(t, reportEnv, "natkit", "report", "--json", "--output", "/root/report.json", "--server", stun,
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
		t.Errorf("natkit report against the service: %s %s %v\n%s", rep.Schema, rep.Verdict, parts, out)
	}
	if saved, err := os.ReadFile(filepath.Join(c.root(), "root/report.json")); err != nil || string(saved) != out {
		t.Errorf("--output: %v (%d bytes, stdout %d)", err, len(saved), len(out))
	}

	// The logs, in the journal.
	logs := c.journal(t)
	for _, want := range []string{"stun: listening on udp 127.0.0.1:", `turn: realm "natkit", 20 users`, "serve: reloaded"} {
		if !strings.Contains(logs, want) {
			t.Errorf("journalctl -u natkit-serve lacks %q:\n%s", want, logs)
		}
	}
	for _, secret := range []string{"newcomer-secret", "reload-secret"} {
		if strings.Contains(logs, secret) || strings.Contains(metrics, secret) || strings.Contains(out, secret) {
			t.Errorf("a password (%s-...) reached the journal, the metrics or the report", secret)
		}
	}

	// systemctl stop: SIGTERM, a clean exit, the ports free.
	c.run(t, nil, "systemctl", "stop", "natkit-serve")
	if got := c.run(t, nil, "systemctl", "show", "-p", "ActiveState,Result", "natkit-serve"); !matchLine(got, "^ActiveState=inactive$") || !matchLine(got, "^Result=success$") {
		t.Errorf("after systemctl stop:\n%s", got)
	}
	if r, err := http.Get(httpURL + "/healthz"); err == nil {
		r.Body.Close()
		t.Error("/healthz answers after systemctl stop")
	}

	// Removal: enabled and running, dpkg -r stops and disables it and keeps
	// the edited config; --purge removes that.
	c.run(t, nil, "systemctl", "enable", "--now", "natkit-serve")
	if !c.healthy(t, httpURL) {
		t.Fatalf("natkit-serve did not start again:\n%s", c.journal(t))
	}
	wants := filepath.Join(c.root(), "etc/systemd/system/multi-user.target.wants/natkit-serve.service")
	if _, err := os.Lstat(wants); err != nil {
		t.Errorf("systemctl enable: %v", err)
	}
	t.Logf("dpkg -r:\n%s", c.run(t, nil, "dpkg", "-r", "natkit"))
	if got, _ := c.runErr(nil, "systemctl", "is-active", "natkit-serve"); strings.TrimSpace(got) == "active" {
		t.Error("natkit-serve still runs after dpkg -r")
	}
	// prerm's systemctl disable reloads systemd: the unit is gone from it.
	if got := c.run(t, nil, "systemctl", "show", "-p", "LoadState", "natkit-serve"); got != "LoadState=not-found\n" {
		t.Errorf("after dpkg -r, systemd still knows the unit: %s", got)
	}
	if _, err := os.Lstat(wants); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dpkg -r left the unit enabled: %v", err)
	}
	if r, err := http.Get(httpURL + "/healthz"); err == nil {
		r.Body.Close()
		t.Error("/healthz answers after dpkg -r")
	}
	for p, gone := range map[string]bool{"usr/bin/natkit": true, "usr/lib/systemd/system/natkit-serve.service": true, "etc/natkit/serve.yaml": false} {
		if _, err := os.Stat(filepath.Join(c.root(), p)); errors.Is(err, fs.ErrNotExist) != gone {
			t.Errorf("after dpkg -r, /%s: %v (want gone: %v)", p, err, gone)
		}
	}
	if got := c.run(t, nil, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "natkit"); strings.TrimSpace(got) != "rc" {
		t.Errorf("after dpkg -r the package is %q, want rc (config files kept)", got)
	}
	t.Logf("dpkg --purge:\n%s", c.run(t, nil, "dpkg", "--purge", "natkit"))
	if _, err := os.Stat(filepath.Join(c.root(), "etc/natkit/serve.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after dpkg --purge, /etc/natkit/serve.yaml: %v", err)
	}
	if out, err := c.runErr(nil, "dpkg-query", "-W", "natkit"); err == nil {
		t.Errorf("dpkg --purge left the package known: %s", out)
	}
}

// debianRootfs returns a Debian 12 minbase root file system with systemd,
// made by debootstrap once per machine (the CI machine is new for each run,
// so the download happens once a run) and shared read-only by the
// containers, each of which writes to an overlay of its own.
func debianRootfs(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "natkit-test", "debian-bookworm-systemd-1")
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	// One debootstrap at a time (two test processes may start together).
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir // made while this one waited
	}
	mirror := os.Getenv("NATKIT_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	t.Logf("debootstrap bookworm from %s into %s", mirror, dir)
	begin := time.Now()
	out, err := exec.Command("debootstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus", "bookworm", tmp, mirror).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("debootstrap: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap took %s", time.Since(begin).Round(time.Second))
	return dir
}

// container is systemd booted by systemd-nspawn.
type container struct {
	nspawn *exec.Cmd
	done   chan struct{}
	log    *bytes.Buffer // nspawn's and the console's output
	leader int           // the container's PID 1, as the host numbers it
}

// bootScript runs in a mount namespace of its own (unshare): systemd-nspawn
// keeps its scratch files under /run/systemd/nspawn and refuses to delete
// them unless that is a tmpfs (here /run is on the root disk), and, with no
// systemd on the host to give it a scope (--keep-unit), it makes the
// container's cgroups below its own: below one the test made for it, so
// that they are found and removed afterwards.
const bootScript = `set -e
for cg in "$@"; do [ "$cg" = -- ] && break; echo $$ > "$cg/cgroup.procs"; done
while [ "$1" != -- ]; do shift; done; shift
mkdir -p /run/systemd/nspawn
mount -t tmpfs -o mode=0755 natkit-e2e /run/systemd/nspawn
exec systemd-nspawn "$@"`

// bootContainer boots rootfs under systemd-nspawn --boot, with dist bound
// at /natkit-dist, and waits until systemd says the system is running.
// Cleanup powers it off (SIGKILL to its PID 1 if that does not end it) and
// removes its cgroups.
func bootContainer(t *testing.T, rootfs, dist string) *container {
	t.Helper()
	name := fmt.Sprintf("natkit-e2e-%d-%d", os.Getpid(), rand.Uint32())
	cgroups := makeCgroups(t, name)
	args := []string{"--mount", "--propagation", "private", "--", "sh", "-c", bootScript, "sh"}
	args = append(args, cgroups...)
	args = append(args, "--",
		"--boot", "--register=no", "--keep-unit", "--machine", name,
		"--volatile=overlay", // the cached tree stays as it is
		"--directory", rootfs, "--bind-ro", dist+":/natkit-dist",
		"--console=pipe", "--kill-signal=SIGRTMIN+3")
	c := &container{log: &bytes.Buffer{}, done: make(chan struct{})}
	c.nspawn = exec.Command("unshare", args...)
	c.nspawn.Stdout, c.nspawn.Stderr = c.log, c.log
	// Should the test binary die (a timeout's panic skips cleanups), the
	// container powers off with it.
	c.nspawn.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := c.nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.nspawn.Wait(); close(c.done) }()
	t.Cleanup(func() { c.shutdown(t, cgroups) })

	// unshare and sh exec: the process started is systemd-nspawn, whose
	// child is the container's init once that is systemd.
	deadline := time.Now().Add(60 * time.Second)
	for c.leader == 0 {
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited: %v\n%s", c.nspawn.ProcessState, c.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container init after 60 s:\n%s", c.log)
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", c.nspawn.Process.Pid, c.nspawn.Process.Pid))
		if f := strings.Fields(string(b)); len(f) == 1 {
			pid, _ := strconv.Atoi(f[0])
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); strings.HasSuffix(exe, "/systemd") {
				c.leader = pid
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		out, err := c.runErr(nil, "systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(out)
		if state == "running" {
			break
		}
		if state == "degraded" {
			t.Fatalf("the container's systemd is degraded:\n%s", c.output("systemctl", "--failed", "--no-pager"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container's systemd: %q %v\n%s", state, err, c.log)
		}
		time.Sleep(100 * time.Millisecond) // its bus is not up yet
	}
	t.Logf("container %s: systemd %s is PID 1", name, strings.Fields(c.run(t, nil, "systemctl", "--version"))[1])
	return c
}

// makeCgroups makes a cgroup named name below the test's own in each
// hierarchy systemd uses: the named v1 one "systemd" and the unified one
// (both, as here, in the hybrid layout; the unified one alone otherwise).
func makeCgroups(t *testing.T, name string) []string {
	t.Helper()
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]string{} // hierarchy: path
	for _, l := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 {
			own[f[1]] = f[2]
		}
	}
	var dirs []string
	for _, h := range []struct{ mount, key string }{{"/sys/fs/cgroup/systemd", "name=systemd"}, {"/sys/fs/cgroup/unified", ""}, {"/sys/fs/cgroup", ""}} {
		if _, err := os.Stat(filepath.Join(h.mount, "cgroup.procs")); err != nil {
			continue
		}
		if h.mount == "/sys/fs/cgroup" && len(dirs) > 0 {
			continue // hybrid: /sys/fs/cgroup is a tmpfs of hierarchies
		}
		p, ok := own[h.key]
		if !ok {
			continue
		}
		d := filepath.Join(h.mount, p, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	if len(dirs) == 0 {
		t.Fatalf("no cgroup hierarchy for systemd:\n%s", self)
	}
	return dirs
}

// shutdown powers the container off as systemd-nspawn does on SIGTERM
// (SIGRTMIN+3 to its systemd), waits, and removes the cgroups.
func (c *container) shutdown(t *testing.T, cgroups []string) {
	select {
	case <-c.done:
	default:
		c.nspawn.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(60 * time.Second):
			t.Errorf("the container did not power off within 60 s: killing it\n%s", c.log)
			if c.leader != 0 {
				syscall.Kill(c.leader, syscall.SIGKILL) // PID 1 of its namespace: all go
			}
			c.nspawn.Process.Kill()
			<-c.done
		}
	}
	if t.Failed() {
		t.Logf("systemd-nspawn:\n%s", c.log)
	}
	for _, cg := range cgroups {
		var dirs []string
		filepath.WalkDir(cg, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			// The kernel empties a cgroup a moment after its last process.
			for try := 0; ; try++ {
				err := os.Remove(dirs[i])
				if err == nil || errors.Is(err, fs.ErrNotExist) {
					break
				}
				if try == 100 {
					t.Errorf("cgroup %s: %v", dirs[i], err)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// root is the container's file system as the host sees it.
func (c *container) root() string { return fmt.Sprintf("/proc/%d/root", c.leader) }

// runErr runs a command in the container (its mount, PID, UTS, IPC and
// cgroup namespaces; the network is the host's) with a clean environment
// plus env, and returns its output.
func (c *container) runErr(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := []string{"--target", strconv.Itoa(c.leader), "--mount", "--pid", "--uts", "--ipc", "--cgroup", "--",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	full = append(full, env...)
	full = append(full, args...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	return string(out), err
}

// output is what a command in the container printed, for a failure's message.
func (c *container) output(args ...string) string {
	out, err := c.runErr(nil, args...)
	if err != nil {
		out += err.Error()
	}
	return out
}

func (c *container) run(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, err := c.runErr(env, args...)
	if err != nil {
		t.Fatalf("in the container: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// journal is journalctl -u natkit-serve.
func (c *container) journal(t *testing.T) string {
	t.Helper()
	return c.run(t, nil, "journalctl", "-u", "natkit-serve", "--no-pager", "-o", "cat")
}

// waitJournal waits (up to 30 s) until the service's journal has want.
func (c *container) waitJournal(t *testing.T, want string) bool {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if strings.Contains(c.journal(t), want) {
			return true
		}
	}
	return false
}

// healthy waits until /healthz answers 200, or the unit is no longer
// active (it failed: Restart=on-failure would try the same ports again)
// or restarted.
func (c *container) healthy(t *testing.T, url string) bool {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r, err := http.Get(url + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return true
			}
		}
		show := c.run(t, nil, "systemctl", "show", "-p", "ActiveState,NRestarts", "natkit-serve")
		if !strings.Contains(show, "ActiveState=active") || !strings.Contains(show, "NRestarts=0") {
			t.Logf("natkit-serve: %s", show)
			return false
		}
	}
	return false
}

// privilegedPort returns a port below 1024 free on 127.0.0.1 for UDP and
// TCP a moment ago.
func privilegedPort(t *testing.T) int {
	t.Helper()
	for try := 0; try < 200; try++ {
		port := 600 + rand.IntN(400)
		pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port in 600-999")
	return 0
}

// hardNofile is the hard "Max open files" of a /proc/PID/limits.
func hardNofile(t *testing.T, limits string) int {
	t.Helper()
	f := strings.Fields(firstLine(limits, "Max open files"))
	if len(f) != 6 {
		t.Fatalf("no open files limit in:\n%s", limits)
	}
	n, err := strconv.Atoi(f[4])
	if err != nil {
		t.Fatalf("open files limit %q: %v", f[4], err)
	}
	return n
}

func firstLine(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
