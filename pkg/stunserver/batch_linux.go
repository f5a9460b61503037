package stunserver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddr holds a raw sockaddr_in or sockaddr_in6 as the kernel wrote it.
type sockaddr struct {
	b   [unix.SizeofSockaddrInet6]byte
	len uint32
}

// mmsghdr is struct mmsghdr (recvmmsg(2)); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsgConn is the Linux batchConn: recvmmsg(2) and sendmmsg(2) through the
// runtime poller, reusing every buffer so that a batch allocates nothing.
type mmsgConn struct {
	rc   syscall.RawConn
	hdrs []mmsghdr
	iovs []unix.Iovec
	d    []datagram
	// results of the closures, which are bound once to avoid allocating.
	n, start, count int
	errno           syscall.Errno
	readFn, writeFn func(fd uintptr) bool
}

func newBatchConn(c *net.UDPConn, size int) (batchConn, error) {
	if size <= 1 {
		return singleConn{c}, nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	m := &mmsgConn{rc: rc, hdrs: make([]mmsghdr, size), iovs: make([]unix.Iovec, size)}
	m.readFn = m.doRead
	m.writeFn = m.doWrite
	return m, nil
}

func (m *mmsgConn) read(d []datagram) (int, error) {
	if len(d) > len(m.hdrs) {
		d = d[:len(m.hdrs)]
	}
	for i := range d {
		h := &m.hdrs[i]
		m.iovs[i].Base = &d[i].buf[0]
		m.iovs[i].SetLen(len(d[i].buf))
		h.hdr = unix.Msghdr{Name: &d[i].sa.b[0], Iov: &m.iovs[i]}
		h.hdr.Namelen = uint32(len(d[i].sa.b))
		h.hdr.SetIovlen(1)
		h.n = 0
	}
	m.count = len(d)
	m.n, m.errno = 0, 0
	if err := m.rc.Read(m.readFn); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, m.errno
	}
	for i := 0; i < m.n; i++ {
		d[i].n = int(m.hdrs[i].n)
		d[i].sa.len = m.hdrs[i].hdr.Namelen
		d[i].src = d[i].sa.addrPort()
	}
	return m.n, nil
}

// doRead and doWrite make raw system calls: the socket never blocks (EAGAIN
// comes back to the poller), and a raw call keeps the runtime from
// handing the P to another thread and from keeping sysmon awake.
func (m *mmsgConn) doRead(fd uintptr) bool {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(m.count), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	m.n, m.errno = int(n), e
	return true
}

func (m *mmsgConn) write(d []datagram, via Role) (int, error) {
	k := 0
	for i := range d {
		if d[i].out == nil || d[i].via != via || k == len(m.hdrs) {
			continue
		}
		// RESPONSE-PORT changes only the port, which sits at the same
		// offset in sockaddr_in and sockaddr_in6.
		binary.BigEndian.PutUint16(d[i].sa.b[2:4], d[i].dst.Port())
		h := &m.hdrs[k]
		m.iovs[k].Base = unsafe.SliceData(d[i].out)
		m.iovs[k].SetLen(len(d[i].out))
		h.hdr = unix.Msghdr{Name: &d[i].sa.b[0], Namelen: d[i].sa.len, Iov: &m.iovs[k]}
		h.hdr.SetIovlen(1)
		k++
	}
	failed := 0
	for m.start = 0; m.start < k; {
		m.count = k
		m.n, m.errno = 0, 0
		if err := m.rc.Write(m.writeFn); err != nil {
			return failed, err
		}
		if m.errno != 0 {
			// The datagram at start failed (e.g. EPERM from a
			// firewall, a bad address): skip it.
			failed++
			m.start++
			continue
		}
		m.start += m.n
	}
	return failed, nil
}

func (m *mmsgConn) doWrite(fd uintptr) bool {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[m.start])), uintptr(m.count-m.start), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	m.n, m.errno = int(n), e
	return true
}

// addrPort decodes the raw sockaddr.
func (s *sockaddr) addrPort() netip.AddrPort {
	switch binary.NativeEndian.Uint16(s.b[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(s.b[4:8])), binary.BigEndian.Uint16(s.b[2:4]))
	case unix.AF_INET6:
		a := netip.AddrFrom16([16]byte(s.b[8:24]))
		return netip.AddrPortFrom(a.Unmap(), binary.BigEndian.Uint16(s.b[2:4]))
	}
	return netip.AddrPort{}
}

// reusePort sets SO_REUSEPORT so that several sockets share one address
// and the kernel spreads datagrams over them by 4-tuple hash.
func reusePort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

const multiSocket = true
