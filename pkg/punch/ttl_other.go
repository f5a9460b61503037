//go:build !unix

package punch

import "syscall"

// setTTL is not supported here: priming falls back to full-TTL probes.
func setTTL(c syscall.Conn, ttl int, v6 bool) error { return nil }

// tcpSimultaneousOpen: without SO_REUSEPORT a listener and connections
// cannot share a port, so --tcp reports tcp-failed at once.
const tcpSimultaneousOpen = false

func reuseControl(int) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error { return nil }
}
