//go:build linux

package main

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsg batches datagrams on a connected UDP socket with sendmmsg/recvmmsg.
type mmsg struct {
	rc      syscall.RawConn
	in, out [][]byte
	lens    []int
	rh, wh  []mmsghdr
	riov    []unix.Iovec
	wiov    []unix.Iovec
	count   int
	n       int
	errno   syscall.Errno
	rfn     func(uintptr) bool
	wfn     func(uintptr) bool
}

func newMmsg(c *net.UDPConn, batch int) (*mmsg, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	m := &mmsg{rc: rc, in: make([][]byte, batch), out: make([][]byte, batch), lens: make([]int, batch),
		rh: make([]mmsghdr, batch), wh: make([]mmsghdr, batch), riov: make([]unix.Iovec, batch), wiov: make([]unix.Iovec, batch)}
	for i := 0; i < batch; i++ {
		m.in[i] = make([]byte, 1500)
		m.out[i] = make([]byte, 20)
		m.riov[i].Base = &m.in[i][0]
		m.riov[i].SetLen(1500)
		m.rh[i].hdr.Iov = &m.riov[i]
		m.rh[i].hdr.SetIovlen(1)
		m.wiov[i].Base = &m.out[i][0]
		m.wiov[i].SetLen(20)
		m.wh[i].hdr.Iov = &m.wiov[i]
		m.wh[i].hdr.SetIovlen(1)
	}
	m.rfn = func(fd uintptr) bool {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.rh[0])), uintptr(len(m.rh)), 0, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		m.n, m.errno = int(n), e
		return true
	}
	m.wfn = func(fd uintptr) bool {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.wh[0])), uintptr(m.count), 0, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		m.n, m.errno = int(n), e
		return true
	}
	return m, nil
}

// send sends out[:count] and returns how many left.
func (m *mmsg) send(count int) (int, error) {
	m.count, m.n, m.errno = count, 0, 0
	if err := m.rc.Write(m.wfn); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, m.errno
	}
	return m.n, nil
}

// recv reads up to a batch into in, with lengths in lens; it honours the
// socket's read deadline.
func (m *mmsg) recv() (int, error) {
	m.n, m.errno = 0, 0
	if err := m.rc.Read(m.rfn); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, m.errno
	}
	for i := 0; i < m.n; i++ {
		m.lens[i] = int(m.rh[i].n)
	}
	return m.n, nil
}
