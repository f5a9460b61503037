// Package rawudp wraps a UDP socket so that its datagram reads and writes
// are raw system calls, made without telling Go's scheduler, for a server
// that handles many small datagrams at a moderate rate (natkit's SIP
// listener).
//
// Why: every system call made the usual way (syscall.Syscall, as
// net.UDPConn makes them) enters the scheduler's syscall state, and the
// first one after all Ps went idle wakes the runtime's sysmon thread out
// of its deep sleep; sysmon then polls at 20 µs for a while and sleeps
// again when the Ps idle. A SIP proxy at a few hundred calls per second
// idles between most datagrams, so nearly every datagram paid for a
// futex wake-up and a few usleep(20 µs) of sysmon: on natkit serve at 300
// calls/s, sysmon took 16 % of the process's CPU and the process made
// twice as many context switches as kamailio (perf, 2026-12-06). A
// recvfrom or sendto on a non-blocking UDP socket does not block (it
// returns EAGAIN, and the goroutine then waits in the netpoller as
// net.UDPConn's would), so it needs none of the scheduler's hand-off: made
// with syscall.RawSyscall6 inside syscall.RawConn's Read and Write, it
// keeps deadlines, closing and the netpoller's waiting of net.UDPConn.
//
// Conn is a net.PacketConn (sipgo's UDP transport serves one) whose
// ReadFrom, WriteTo and WriteToUDPAddrPort are raw; everything else is
// the wrapped *net.UDPConn's. Elsewhere than Linux it is the plain socket.
package rawudp

import (
	"net"
	"net/netip"
)

// Conn is a UDP socket with raw reads and writes.
type Conn struct {
	*net.UDPConn
	raw rawState
}

// New wraps c; c stays open and owned by the caller (Close closes it).
func New(c *net.UDPConn) (*Conn, error) {
	rc := &Conn{UDPConn: c}
	if err := rc.raw.init(c); err != nil {
		return nil, err
	}
	return rc, nil
}

// ReadFrom reads a datagram into b; the address is a *net.UDPAddr.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.readFrom(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// WriteTo writes a datagram to addr, a *net.UDPAddr.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua.Zone != "" { // a scope by name: net resolves it
		return c.UDPConn.WriteTo(b, addr)
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}

// WriteToUDPAddrPort writes a datagram to ap.
func (c *Conn) WriteToUDPAddrPort(b []byte, ap netip.AddrPort) (int, error) {
	return c.writeTo(b, ap)
}
