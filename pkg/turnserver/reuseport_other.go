//go:build !linux

package turnserver

import "syscall"

// reusePort is not used outside Linux, where SO_REUSEPORT does not balance.
var reusePort func(network, address string, c syscall.RawConn) error
