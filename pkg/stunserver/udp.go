package stunserver

import (
	"net"
	"net/netip"
	"time"
)

// udpBufSize is the receive buffer per datagram: larger requests are cut
// short by the kernel and then fail to decode, which is what they deserve.
const udpBufSize = 1500

// respBufSize holds any response: a Binding success with IPv6 addresses,
// SOFTWARE and FINGERPRINT is under 200 bytes.
const respBufSize = 512

// serveUDP is one socket's goroutine: read a batch, answer it in place,
// write the answers in one batch.
func (s *Server) serveUDP(c *net.UDPConn, local netip.AddrPort, w *workerStats) {
	bc, err := newBatchConn(c, s.cfg.Batch)
	if err != nil {
		s.cfg.Logger.Error("stun: udp socket", "addr", local.String(), "err", err)
		return
	}
	d := make([]datagram, s.cfg.Batch)
	mem := make([]byte, s.cfg.Batch*(udpBufSize+respBufSize))
	for i := range d {
		d[i].buf = mem[:udpBufSize:udpBufSize]
		mem = mem[udpBufSize:]
		d[i].outb = mem[:respBufSize:respBufSize]
		mem = mem[respBufSize:]
	}
	r := NewResponder(s.cfg.Software, netip.AddrPort{})
	for {
		n, err := bc.read(d)
		if err != nil {
			if isClosed(err) {
				return
			}
			// ICMP errors reported on the socket and the like: count and
			// go on, pausing briefly so a persistent error cannot spin.
			w.readErr.Add(1)
			time.Sleep(time.Millisecond)
			continue
		}
		w.batches.Add(1)
		answers := 0
		for i := 0; i < n; i++ {
			out, v := r.Respond(d[i].buf[:d[i].n], d[i].src, local, d[i].outb)
			d[i].out = out
			w.verdicts[v].Add(1)
			if out != nil {
				answers++
			}
		}
		if answers > 0 {
			failed, err := bc.write(d[:n])
			if failed > 0 {
				w.writeErr.Add(uint64(failed))
			}
			if err != nil && isClosed(err) {
				return
			}
		}
	}
}
