package turnclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
)

// startCoturn runs coturn's turnserver on 127.0.0.1 with long-term
// credentials alice:wonderland, loopback peers allowed, and returns its port.
func startCoturn(t *testing.T) int {
	t.Helper()
	bin := interoptest.Tool(t, "turnserver", "coturn")
	dir := t.TempDir()
	for try := 0; try < 5; try++ {
		l, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.LocalAddr().(*net.UDPAddr).Port
		l.Close()
		cmd := exec.Command(bin, "-n", "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
			"--listening-port", strconv.Itoa(port), "--min-port", "21000", "--max-port", "21999",
			"--realm", "natkit.test", "--user", "alice:wonderland", "--lt-cred-mech",
			"--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--no-stdout-log",
			"--log-file", filepath.Join(dir, "turn.log"), "--pidfile", filepath.Join(dir, "turn.pid"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		// Ready when it answers on TCP.
		for i := 0; i < 50; i++ {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond); err == nil {
				c.Close()
				return port
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Kill()
	}
	t.Fatal("coturn did not start")
	return 0
}

func echoPeer(t *testing.T) (netip.AddrPort, *EchoStats) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st := &EchoStats{}
	done := make(chan struct{})
	go func() { Echo(ctx, pc, st); close(done) }()
	t.Cleanup(func() { cancel(); <-done; pc.Close() })
	return netip.MustParseAddrPort(pc.LocalAddr().String()), st
}

// TestAgainstCoturn: natkit's client allocates, binds a channel and relays
// through coturn; a wrong password is a 401 and a clear error; data to a
// peer without a permission is dropped.
func TestAgainstCoturn(t *testing.T) {
	port := startCoturn(t)
	peer, st := echoPeer(t)
	server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, send := range []bool{false, true} {
				rep, err := Check(ctx, CheckOptions{Client: Config{Server: server, Transport: tr, Username: "alice", Password: "wonderland"},
					Peer: peer, Count: 20, Interval: time.Millisecond, SendIndications: send})
				if err != nil {
					t.Fatal(err)
				}
				if !rep.Success || rep.Received != 20 || rep.Permission == nil || *rep.Permission != "granted" ||
					rep.RelayedAddress == nil || rep.Software == nil {
					t.Fatalf("send=%v: %+v error %v", send, rep, deref(rep.Error))
				}
				if !send && (rep.Channel == nil || *rep.Channel != 0x4000) {
					t.Errorf("channel %v", rep.Channel)
				}
				names := []string{}
				for _, s := range rep.Steps {
					names = append(names, s.Name+"/"+s.Status)
				}
				want := "[Allocate/challenge Allocate/ok Refresh/ok CreatePermission/ok ChannelBind/ok Refresh (release)/ok]"
				if send {
					want = "[Allocate/challenge Allocate/ok Refresh/ok CreatePermission/ok Refresh (release)/ok]"
				}
				if fmt.Sprint(names) != want {
					t.Errorf("steps %v, want %s", names, want)
				}
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := Dial(ctx, Config{Server: server, Username: "alice", Password: "nope"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Allocate(ctx)
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err %v", err)
		}
		steps := c.Steps()
		if len(steps) != 2 || !steps[0].Challenge || steps[1].Code != 401 {
			t.Errorf("steps %+v", steps)
		}
	})
	t.Run("no permission, no data", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := Dial(ctx, Config{Server: server, Username: "alice", Password: "wonderland"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Allocate(ctx); err != nil {
			t.Fatal(err)
		}
		before := st.Packets.Load()
		for i := 0; i < 5; i++ {
			c.Send(peer, []byte("should be dropped"))
		}
		time.Sleep(300 * time.Millisecond)
		if got := st.Packets.Load() - before; got != 0 {
			t.Errorf("the peer received %d packets without a permission", got)
		}
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
