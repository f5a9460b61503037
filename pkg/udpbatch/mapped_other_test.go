//go:build !unix

package udpbatch

import (
	"net"
	"testing"
)

func listenMapped(t testing.TB) *net.UDPConn {
	t.Helper()
	t.Skip("a dual-stack socket bound to ::ffff:127.0.0.1 is made only on unix")
	return nil
}
