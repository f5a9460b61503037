package anchor

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oobSize holds one SCM_TIMESTAMPNS control message.
const oobSize = 64

// stampReceive asks the kernel to stamp each datagram c receives with the
// time it arrived (SO_TIMESTAMPNS, socket(7)), so that the relay can tell
// how long a packet spent in it, socket queue included.
func stampReceive(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	})
}

// rxTime returns the arrival time (Unix ns) in oob, or 0. The relay turns
// on one control message only, so it is the first; parsed in place, as
// unix.ParseSocketControlMessage allocates.
func rxTime(oob []byte) int64 {
	if len(oob) < unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))) {
		return 0
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_TIMESTAMPNS || uint64(h.Len) < uint64(unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{})))) {
		return 0
	}
	ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
	return ts.Nano()
}
