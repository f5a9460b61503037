//go:build !linux

package stunserver

import (
	"net"
	"syscall"
)

type sockaddr struct{}

func newBatchConn(c *net.UDPConn, size int) (batchConn, error) { return singleConn{c}, nil }

// reusePort is not used outside Linux, where SO_REUSEPORT does not balance.
var reusePort func(network, address string, c syscall.RawConn) error

const multiSocket = false
