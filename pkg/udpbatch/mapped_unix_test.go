//go:build unix

package udpbatch

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// listenMapped returns a dual-stack IPv6 socket (IPV6_V6ONLY off) bound to
// the IPv4 loopback address in its mapped form, ::ffff:127.0.0.1: the kernel
// reports its IPv4 peers as mapped IPv6 addresses, which Read must unmap.
// The net package cannot bind such a socket, so it is made by hand.
func listenMapped(t testing.TB) *net.UDPConn {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Skipf("no IPv6 socket: %v", err)
	}
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "mapped")
	defer f.Close()
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0); err != nil {
		t.Skipf("cannot clear IPV6_V6ONLY: %v", err)
	}
	sa := &syscall.SockaddrInet6{Addr: [16]byte{10: 0xff, 11: 0xff, 12: 127, 15: 1}}
	if err := syscall.Bind(fd, sa); err != nil {
		t.Skipf("cannot bind [::ffff:127.0.0.1]:0: %v", err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		t.Fatalf("FilePacketConn: %v", err)
	}
	c, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		t.Fatalf("FilePacketConn returned %T, want *net.UDPConn", pc)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	return c
}
