package turnserver

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/interoptest"
	"github.com/natkit/natkit/pkg/leaktest"
)

// freeUDPPort finds a port free on 127.0.0.2 for turnutils_peer.
func freeUDPPort(t *testing.T) int {
	pc, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// startPeer runs coturn's turnutils_peer (a UDP echo) on 127.0.0.2 and
// returns its port once it echoes. The port is picked free, but another
// process may take it before the peer binds it: a peer that exits or does
// not echo is stopped and started again on another port.
func startPeer(t *testing.T) int {
	t.Helper()
	bin := interoptest.Tool(t, "turnutils_peer", "coturn")
	for try := 1; try <= 3; try++ {
		port := freeUDPPort(t)
		cmd := exec.Command(bin, "-L", "127.0.0.2", "-p", strconv.Itoa(port))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() { cmd.Process.Kill(); <-exited }
		if echoes(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(port)), exited) {
			t.Cleanup(stop)
			return port
		}
		stop()
		t.Logf("turnutils_peer did not echo on port %d: trying another", port)
	}
	t.Fatal("turnutils_peer did not start")
	return 0
}

// echoes reports whether a UDP echo answers on addr within 10 s, giving up
// early when exited closes.
func echoes(addr netip.AddrPort, exited <-chan struct{}) bool {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return false
	}
	defer c.Close()
	buf := make([]byte, 64)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-exited:
			return false
		default:
		}
		c.WriteToUDPAddrPort([]byte("natkit-echo-check"), addr)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, from, err := c.ReadFromUDPAddrPort(buf); err == nil && from.Port() == addr.Port() && string(buf[:n]) == "natkit-echo-check" {
			return true
		}
	}
	return false
}

// TestUclientRelaysThroughNatkit: coturn's turnutils_uclient allocates,
// binds channels (with its RTCP allocations: EVEN-PORT) and relays to
// turnutils_peer through natkit's server, over UDP and TCP, with no errors
// and no loss; a wrong password makes it fail.
func TestUclientRelaysThroughNatkit(t *testing.T) {
	uclient := interoptest.Tool(t, "turnutils_uclient", "coturn")
	peer := startPeer(t)
	leaktest.Check(t)
	// pion's debug log tells a channel number uclient drew twice (below).
	var serverLog interoptest.Buffer
	s := startServer(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&serverLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	port := strconv.Itoa(int(s.addr("udp").Port()))
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args = append(args, "-e", "127.0.0.2", "-r", strconv.Itoa(peer), "-p", port, "127.0.0.1")
		out, err := exec.CommandContext(ctx, uclient, args...).CombinedOutput()
		return string(out), err
	}
	lost := regexp.MustCompile(`Total lost packets (\d+)`)
	for _, tc := range []struct{ name, flags string }{
		{"udp channels", "-n 20 -m 4"},
		{"udp send indications", "-s -n 10 -m 2"},
		{"tcp", "-t -n 20 -m 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out string
			var err error
			for try := 1; ; try++ {
				mark := serverLog.Len()
				out, err = run(append([]string{"-u", "alice", "-w", "wonderland", "-l", "120"}, strings.Fields(tc.flags)...)...)
				// uclient binds a random channel number to the peer's RTCP
				// port, then draws another for the RTP port ("playing with
				// the TURN server trying to screw it", its source says).
				// When the draw repeats (1 in 16384 per client) the server
				// must refuse the bind with 400, as coturn does (RFC 8656
				// §12.2): uclient's own collision, not ours, so the run is
				// made again — only when the server's log shows exactly that.
				collided := strings.Contains(out, "channel bind: error 400") &&
					serverLog.Wait(mark, sameChannelOtherPeer, 2*time.Second)
				if !collided || try == 3 {
					break
				}
				t.Logf("uclient drew one channel number for two peers (refused with 400, as it must be): run %d again", try)
			}
			if err != nil {
				t.Fatalf("uclient: %v\n%s", err, out)
			}
			if strings.Contains(out, "ERROR") {
				t.Errorf("uclient reported an error:\n%s", out)
			}
			m := lost.FindStringSubmatch(out)
			if m == nil || m[1] != "0" {
				t.Errorf("uclient lost packets (or printed no total):\n%s", out)
			}
			if !strings.Contains(out, "tot_recv_msgs=") {
				t.Errorf("uclient received nothing:\n%s", out)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		out, err := run("-u", "alice", "-w", "wrong", "-n", "2")
		if err == nil || !strings.Contains(out, "Cannot complete Allocation") {
			t.Errorf("uclient with a wrong password: %v\n%s", err, out)
		}
	})
}

// sameChannelOtherPeer is what pion/turn logs when a channel number bound
// to one peer is asked for another.
const sameChannelOtherPeer = "you cannot use the same channel number with different peer"

// TestChannelOfAnotherPeer: a channel number bound to one peer and then
// asked for another peer of the same allocation gets 400 (RFC 8656 §12.2),
// and the server's debug log names the cause — what
// TestUclientRelaysThroughNatkit reads to tell uclient's own random
// collision from a fault of ours.
func TestChannelOfAnotherPeer(t *testing.T) {
	leaktest.Check(t)
	var serverLog interoptest.Buffer
	s := startServer(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&serverLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	for _, tr := range []string{"udp", "tcp"} {
		c, ctx := allocated(t, s, tr)
		if _, err := c.ChannelBind(ctx, 0x4abc, netip.MustParseAddrPort("127.0.0.2:5001")); err != nil {
			t.Fatal(err)
		}
		// The same peer again is a refresh.
		if _, err := c.ChannelBind(ctx, 0x4abc, netip.MustParseAddrPort("127.0.0.2:5001")); err != nil {
			t.Fatalf("%s: refreshing a channel: %v", tr, err)
		}
		mark := serverLog.Len()
		if _, err := c.ChannelBind(ctx, 0x4abc, netip.MustParseAddrPort("127.0.0.2:5000")); code(err) != 400 {
			t.Fatalf("%s: channel 0x4abc for a second peer: %v, want 400", tr, err)
		}
		if !serverLog.Wait(mark, sameChannelOtherPeer, 2*time.Second) {
			t.Errorf("%s: the server's debug log does not name the cause:\n%s", tr, serverLog.From(mark))
		}
	}
}
