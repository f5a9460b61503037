//go:build unix

package punch

import "syscall"

// setTTL sets the IPv4 TTL of a UDP or TCP socket.
func setTTL(c syscall.Conn, ttl int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, ttl) })
	if err != nil {
		return err
	}
	return serr
}
