//go:build !linux

package punch

import (
	"errors"
	"net"
)

// enableRecvErr: ICMP errors are read on Linux only (IP_RECVERR); here a
// router without an input firewall goes unnoticed.
func enableRecvErr(net.PacketConn, bool) error {
	return errors.New("punch: ICMP errors are read on Linux only")
}

func readRefusals(net.PacketConn) []refusal { return nil }

// isICMPError: no ICMP errors are queued here.
func isICMPError(error) bool { return false }
