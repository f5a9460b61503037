package interoptest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreeUDPPorts returns n UDP ports on 127.0.0.1 that were free a moment
// ago (for TCP too, almost always: the OS picks them alike). Another
// process may take one before the caller binds it: retry on "already in
// use".
func FreeUDPPorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var conns []net.PacketConn
	for len(ports) < n {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
	}
	for _, c := range conns {
		c.Close()
	}
	return ports
}

// Listening tells whether something serves the port on 127.0.0.1: over TCP
// a connection is accepted; over UDP the port can no longer be bound.
func Listening(network string, port int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if network == "tcp" {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// Proc is a program a test started; the test's cleanup kills it by its
// own PID if it is still running.
type Proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	exited chan struct{}
	err    error
}

func (p *Proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output is what the program wrote to stdout and stderr so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Exited is closed when the program has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is the program's exit error (nil: status 0); valid after Exited.
func (p *Proc) Err() error { return p.err }

// Wait waits for the program to exit and returns its exit error, or
// ctx's error when ctx ends first.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start starts path with args in dir and kills it (its own PID only) when
// the test ends, if it still runs.
func Start(t testing.TB, dir, path string, args ...string) *Proc {
	t.Helper()
	p := &Proc{cmd: exec.Command(path, args...), exited: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// inUse tells whether SIPp failed because a port was taken.
func inUse(p *Proc) bool { return strings.Contains(p.Output(), "already in use") }

// SIPpArgs returns SIPp's arguments for a SIP port and a media port.
type SIPpArgs func(sipPort, mediaPort int) []string

// StartSIPp starts SIPp (sipp from Tool) in dir on free loopback ports,
// with the arguments args returns for them, and waits until it listens on
// its SIP port over transport ("udp" or "tcp"). A port another process
// took in between (SIPp: "Address already in use") means new ports and
// another try.
func StartSIPp(t testing.TB, ctx context.Context, sipp, dir, transport string, args SIPpArgs) (*Proc, int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports := FreeUDPPorts(t, 2)
		p := Start(t, dir, sipp, args(ports[0], ports[1])...)
		for !Listening(transport, ports[0]) {
			select {
			case <-p.exited:
				if attempt < 5 && inUse(p) {
					break
				}
				t.Fatalf("sipp exited before listening: %v\n%s", p.err, p.Output())
			case <-ctx.Done():
				t.Fatalf("sipp did not start listening\n%s", p.Output())
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
		select {
		case <-p.exited:
			if attempt < 5 && inUse(p) {
				continue // the port was taken: try new ones
			}
			t.Fatalf("sipp exited after it started listening: %v\n%s", p.err, p.Output())
		default:
		}
		return p, ports[0]
	}
}

// RunSIPp runs SIPp in dir to its end on free loopback ports, with the
// arguments args returns for them, and returns it exited (see Proc.Err). A
// port another process took (SIPp: "Address already in use") means new
// ports and another try; ctx ending kills it.
func RunSIPp(t testing.TB, ctx context.Context, sipp, dir string, args SIPpArgs) *Proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports := FreeUDPPorts(t, 2)
		p := Start(t, dir, sipp, args(ports[0], ports[1])...)
		select {
		case <-p.exited:
		case <-ctx.Done():
			p.cmd.Process.Kill()
			<-p.exited
			t.Fatalf("sipp did not end in time\n%s", p.Output())
		}
		if p.err != nil && attempt < 5 && inUse(p) {
			continue
		}
		return p
	}
}
