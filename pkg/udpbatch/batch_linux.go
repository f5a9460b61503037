package udpbatch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr (recvmmsg(2)); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// sockaddr holds a raw sockaddr_in or sockaddr_in6.
type sockaddr [unix.SizeofSockaddrInet6]byte

// sysBatch is a batch's kernel side; its write closure is bound once so
// that a write allocates nothing.
type sysBatch struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	sas  []sockaddr

	start, count, n int
	errno           syscall.Errno
	writeFn         func(fd uintptr) bool
}

func (s *sysBatch) init(n int) {
	s.hdrs = make([]mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	s.sas = make([]sockaddr, n)
	s.writeFn = s.doWrite
}

// doWrite and doRead make raw system calls: the socket never blocks (EAGAIN
// comes back to the poller), and a raw call keeps the runtime from
// handing the P to another thread and from keeping sysmon awake.
func (s *sysBatch) doWrite(fd uintptr) bool {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[s.start])), uintptr(s.count-s.start), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		return false
	}
	s.n, s.errno = int(n), e
	return true
}

// sysConn is a socket's raw side; the read state is the single reader's.
type sysConn struct {
	rc syscall.RawConn
	v6 bool // AF_INET6: destinations are written as sockaddr_in6

	// Read state, bound once; rmu serialises readers.
	rmu    sync.Mutex
	pool   *Pool
	fixed  *Batch // ReadInto's batch, or nil: one from pool
	b      *Batch
	n      int
	errno  syscall.Errno
	readFn func(fd uintptr) bool
	// ReadEach's: the caller's function, and whether to wait for the
	// socket before the next read.
	each   func(*Batch, int) bool
	wait   bool
	eachFn func(fd uintptr) bool
}

func newSysConn(pc net.PacketConn) *sysConn {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var dom, typ int
	var derr, terr error
	if err := rc.Control(func(fd uintptr) {
		dom, derr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		typ, terr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	}); err != nil || derr != nil || terr != nil || typ != unix.SOCK_DGRAM ||
		(dom != unix.AF_INET && dom != unix.AF_INET6) {
		return nil
	}
	s := &sysConn{rc: rc, v6: dom == unix.AF_INET6}
	s.readFn = s.doRead
	s.eachFn = s.doEach
	return s
}

func (s *sysConn) ok() bool { return s != nil }

func (s *sysConn) read(p *Pool) (*Batch, int, error) { return s.readBatch(p, nil) }

func (s *sysConn) readInto(b *Batch) (int, error) {
	_, n, err := s.readBatch(nil, b)
	return n, err
}

// readBatch reads into fixed, or into a batch from p.
func (s *sysConn) readBatch(p *Pool, fixed *Batch) (*Batch, int, error) {
	s.rmu.Lock()
	s.pool, s.fixed, s.b, s.n, s.errno = p, fixed, nil, 0, 0
	err := s.rc.Read(s.readFn)
	b, n, errno := s.b, s.n, s.errno
	s.pool, s.fixed, s.b = nil, nil, nil
	s.rmu.Unlock()
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		if fixed == nil {
			p.Put(b)
		}
		return nil, 0, err
	}
	s.decode(b, n)
	return b, n, nil
}

// readEach runs Conn.ReadEach in one wait on the socket (RawConn.Read):
// doEach reads and hands over batches, and returns false — wait until
// the socket is readable — on EAGAIN or after a batch that did not fill
// up. The poller remembers readiness that came meanwhile (it is reset only
// when a RawConn.Read starts, and every datagram that arrives makes the
// socket ready again), so no datagram is left waiting.
func (s *sysConn) readEach(p *Pool, f func(*Batch, int) bool) error {
	s.rmu.Lock()
	s.pool, s.fixed, s.b, s.errno, s.each, s.wait = p, nil, nil, 0, f, false
	err := s.rc.Read(s.eachFn)
	errno := s.errno
	s.pool, s.each = nil, nil
	s.rmu.Unlock()
	if err == nil && errno != 0 {
		err = errno
	}
	return err
}

func (s *sysConn) doEach(fd uintptr) bool {
	for {
		if s.wait {
			s.wait = false
			return false
		}
		if !s.doRead(fd) {
			return false // EAGAIN: doRead put the batch back
		}
		b, n := s.b, s.n
		s.b = nil
		if s.errno != 0 {
			s.pool.Put(b)
			return true
		}
		s.decode(b, n)
		if !s.each(b, n) {
			return true
		}
		s.wait = n < len(b.Msgs)
	}
}

// decode sets N and Addr of the n datagrams the kernel put in b.
func (s *sysConn) decode(b *Batch, n int) {
	for i := 0; i < n; i++ {
		m, h := &b.Msgs[i], &b.sys.hdrs[i]
		m.N = int(h.n)
		m.Addr = decode(&b.sys.sas[i])
	}
}

// doRead takes a batch from the pool only for the system call, so that a
// socket waiting for data holds none.
func (s *sysConn) doRead(fd uintptr) bool {
	b := s.fixed
	if b == nil {
		b = s.pool.Get()
	}
	sb := &b.sys
	for i := range b.Msgs {
		m := &b.Msgs[i]
		sb.iovs[i].Base = unsafe.SliceData(m.Buf[m.Off:])
		sb.iovs[i].SetLen(len(m.Buf) - m.Off)
		h := &sb.hdrs[i]
		h.hdr = unix.Msghdr{Name: &sb.sas[i][0], Namelen: uint32(len(sb.sas[i])), Iov: &sb.iovs[i]}
		h.hdr.SetIovlen(1)
		h.n = 0
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&sb.hdrs[0])), uintptr(len(b.Msgs)), 0, 0, 0)
	if e == unix.EAGAIN || e == unix.EINTR {
		if s.fixed == nil {
			s.pool.Put(b)
		}
		return false
	}
	s.b, s.n, s.errno = b, int(n), e
	return true
}

func (s *sysConn) write(sb *sysBatch, msgs []Msg) (int, error) {
	failed := 0
	for len(msgs) > 0 {
		// Up to a batch of the datagrams that fit their buffers.
		k, used := 0, 0
		for ; used < len(msgs) && k < len(sb.hdrs); used++ {
			m := &msgs[used]
			if !m.fits() {
				failed++
				continue
			}
			i := k
			k++
			sl := encode(&sb.sas[i], m.Addr, s.v6)
			sb.iovs[i].Base = unsafe.SliceData(m.Buf[m.Off:])
			sb.iovs[i].SetLen(m.N)
			h := &sb.hdrs[i]
			h.hdr = unix.Msghdr{Name: &sb.sas[i][0], Namelen: sl, Iov: &sb.iovs[i]}
			h.hdr.SetIovlen(1)
		}
		for sb.start = 0; sb.start < k; {
			sb.count, sb.n, sb.errno = k, 0, 0
			if err := s.rc.Write(sb.writeFn); err != nil {
				return failed + k - sb.start + len(msgs) - used, err
			}
			if sb.errno != 0 {
				// The datagram at start was refused: skip it.
				failed++
				sb.start++
				continue
			}
			sb.start += sb.n
		}
		msgs = msgs[used:]
	}
	return failed, nil
}

// encode writes ap as the socket's family wants it and returns its length.
func encode(sa *sockaddr, ap netip.AddrPort, v6 bool) uint32 {
	*sa = sockaddr{}
	a := ap.Addr()
	binary.BigEndian.PutUint16(sa[2:4], ap.Port())
	if !v6 {
		binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET)
		if !a.Unmap().Is4() {
			return 0 // an IPv6 destination on an IPv4 socket: the kernel refuses the length (EINVAL)
		}
		a4 := a.Unmap().As4()
		copy(sa[4:8], a4[:])
		return unix.SizeofSockaddrInet4
	}
	binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET6)
	a16 := a.As16()
	copy(sa[8:24], a16[:])
	return unix.SizeofSockaddrInet6
}

// decode reads the sockaddr the kernel wrote.
func decode(sa *sockaddr) netip.AddrPort {
	switch binary.NativeEndian.Uint16(sa[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:4]))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])).Unmap(), binary.BigEndian.Uint16(sa[2:4]))
	}
	return netip.AddrPort{}
}

// ReusePort sets SO_REUSEPORT, for net.ListenConfig.Control, so that several
// sockets share one address; the kernel spreads datagrams over them by
// 4-tuple hash, so that one source always reaches the same socket. It is
// nil where SO_REUSEPORT does not balance (outside Linux): use one socket.
var ReusePort = func(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
