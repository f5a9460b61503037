//go:build !unix

package punch

import "syscall"

// setTTL is not supported here: priming falls back to full-TTL probes.
func setTTL(c syscall.Conn, ttl int) error { return nil }
