package stunserver

import (
	"net"
	"net/netip"
)

// datagram is one slot of a batch: a received request and its response.
type datagram struct {
	buf  []byte // receive buffer, full capacity
	n    int    // bytes received
	src  netip.AddrPort
	out  []byte         // response, nil for none
	via  Role           // socket group to send out from
	dst  netip.AddrPort // where to send out: src, or src's IP at RESPONSE-PORT
	outb []byte         // response buffer
	sa   sockaddr       // src as the kernel wrote it
	fwd  bool           // for the sharer's reader (udpWorker.handle, direct)
}

// batchConn moves datagrams in batches.
type batchConn interface {
	// read fills d[:n] and returns n ≥ 1, or an error.
	read(d []datagram) (int, error)
	// write sends every d[i].out that is not nil and whose d[i].via is
	// via to d[i].dst, and returns how many sends failed. Several
	// goroutines may write on one socket, each through its own batchConn.
	write(d []datagram, via Role) (failed int, err error)
}

// singleConn is the portable batchConn: one system call per datagram.
type singleConn struct{ c *net.UDPConn }

func (s singleConn) read(d []datagram) (int, error) {
	n, src, err := s.c.ReadFromUDPAddrPort(d[0].buf)
	if err != nil {
		return 0, err
	}
	d[0].n, d[0].src = n, src
	return 1, nil
}

func (s singleConn) write(d []datagram, via Role) (int, error) {
	failed := 0
	for i := range d {
		if d[i].out == nil || d[i].via != via {
			continue
		}
		if _, err := s.c.WriteToUDPAddrPort(d[i].out, d[i].dst); err != nil {
			if isClosed(err) {
				return failed, err
			}
			failed++
		}
	}
	return failed, nil
}
