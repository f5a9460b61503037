//go:build !linux

package anchor

import "net"

const oobSize = 0

func stampReceive(*net.UDPConn) {}

func rxTime([]byte) int64 { return 0 }
