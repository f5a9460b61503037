//go:build !linux

package rawudp

import (
	"net"
	"net/netip"
)

type rawState struct{}

func (r *rawState) init(*net.UDPConn) error { return nil }

func (c *Conn) readFrom(b []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(b)
}

func (c *Conn) writeTo(b []byte, ap netip.AddrPort) (int, error) {
	return c.UDPConn.WriteToUDPAddrPort(b, ap)
}
