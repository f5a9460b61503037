package probe_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/stunclient"
)

// freePort returns a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// start runs a server process, killed in t.Cleanup, and waits until it
// answers a Binding request on the address mk gives. mk picks free ports;
// a picked port can be taken by another process before the server binds
// it, so a server that exits or stays silent is stopped and started again
// on ports mk picks anew.
func start(t *testing.T, name string, mk func() (addr string, args []string)) string {
	t.Helper()
	for try := 1; ; try++ {
		addr, args := mk()
		if startOnce(t, addr, name, args, try == 3) {
			return addr
		}
		t.Logf("%s did not come up on %s: trying other ports", filepath.Base(name), addr)
	}
}

func startOnce(t *testing.T, addr string, name string, args []string, last bool) bool {
	t.Helper()
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
	}
	up := false
	t.Cleanup(func() {
		if !up {
			return
		}
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", filepath.Base(name), b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			deadline = time.Time{} // it could not start: other ports
			continue
		default:
		}
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, err = stunclient.Binding(context.Background(), pc, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)),
			stunclient.Config{RTO: 100 * time.Millisecond, Timeout: 300 * time.Millisecond}, stunclient.Request{})
		pc.Close()
		if err == nil {
			up = true
			return true
		}
	}
	b, _ := os.ReadFile(logf.Name())
	stop()
	if last {
		t.Fatalf("%s did not answer on %s within 10s; log:\n%s", name, addr, b)
	}
	return false
}

// TestInteropCoturn probes coturn's turnserver (STUN only) on loopback over
// UDP and TCP.
func TestInteropCoturn(t *testing.T) {
	bin := interoptest.Tool(t, "turnserver", "coturn")
	dir := t.TempDir()
	addr := start(t, bin, func() (string, []string) {
		port := freePort(t)
		return fmt.Sprintf("127.0.0.1:%d", port), []string{"-n", "--no-cli", "--no-tls", "--no-dtls", "--listening-ip", "127.0.0.1",
			"--listening-port", fmt.Sprint(port), "--stun-only", "--log-file", "stdout", "--simple-log",
			"--pidfile", filepath.Join(dir, "pid"), "--userdb", filepath.Join(dir, "db")}
	})
	for _, tr := range []probe.Transport{probe.UDP, probe.TCP} {
		t.Run(string(tr), func(t *testing.T) {
			rep := run(t, probe.Options{Servers: eps(t, addr), Transport: tr, Count: 3})
			r := rep.Results[0]
			if !r.Success || r.Received != 3 {
				t.Fatalf("%+v error %v", r, r.Error)
			}
			if !strings.HasPrefix(*r.MappedAddress, "127.0.0.1:") || *r.MappedAddress != *r.LocalAddress {
				t.Errorf("mapped %s, want our own address %s", *r.MappedAddress, *r.LocalAddress)
			}
			if *r.MappedAttribute != "XOR-MAPPED-ADDRESS" || *r.RFC3489 || r.Software == nil || !strings.Contains(*r.Software, "Coturn") {
				t.Errorf("attribute %s rfc3489 %v software %v", *r.MappedAttribute, *r.RFC3489, r.Software)
			}
		})
	}
}

// TestInteropStund probes Vovida's RFC 3489 stund with its two addresses
// 127.0.0.1 and 127.0.0.2 (both on lo).
func TestInteropStund(t *testing.T) {
	bin := interoptest.Tool(t, "stund", "stun-server")
	var alt int
	addr := start(t, bin, func() (string, []string) {
		port := freePort(t)
		alt = freePort(t)
		return fmt.Sprintf("127.0.0.1:%d", port), []string{"-h", "127.0.0.1", "-a", "127.0.0.2", "-p", fmt.Sprint(port), "-o", fmt.Sprint(alt)}
	})
	rep := run(t, probe.Options{Servers: eps(t, addr), Count: 2})
	r := rep.Results[0]
	if !r.Success || r.Received != 2 {
		t.Fatalf("%+v error %v", r, r.Error)
	}
	if !strings.HasPrefix(*r.MappedAddress, "127.0.0.1:") || *r.MappedAddress != *r.LocalAddress {
		t.Errorf("mapped %s, want our own address %s", *r.MappedAddress, *r.LocalAddress)
	}
	if !*r.RFC3489 || *r.ResponseOrigin != addr || *r.OtherAddress != fmt.Sprintf("127.0.0.2:%d", alt) {
		t.Errorf("rfc3489 %v SOURCE-ADDRESS %v CHANGED-ADDRESS %v", *r.RFC3489, *r.ResponseOrigin, *r.OtherAddress)
	}
	// A classic request (no magic cookie) gets MAPPED-ADDRESS only.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	resp, err := stunclient.Binding(context.Background(), pc, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)), fast, stunclient.Request{Classic: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Mapped != pc.LocalAddr().(*net.UDPAddr).AddrPort() || !resp.RFC3489 || !resp.Message.Classic() {
		t.Errorf("classic request: mapped %v via %x, classic %v", resp.Mapped, resp.MappedAttr, resp.Message.Classic())
	}
}
