package stunserver

import (
	"time"
)

// udpBufSize is the receive buffer per datagram. It holds a request padded
// to a 1500-byte MTU (RFC 5780 §5: "PADDING ... SHOULD be equal to the MTU")
// and, once the request is answered, a padded response (see maxPadded).
// Larger requests are cut short by the kernel and then fail to decode,
// which is what they deserve.
const udpBufSize = maxPadded

// respBufSize holds any unpadded response: a Binding success with IPv6
// addresses, SOFTWARE and FINGERPRINT is under 300 bytes.
const respBufSize = 512

// serveUDP is the goroutine of socket i of group g: read a batch, answer it
// in place, write the answers in one batch per socket they leave from.
//
// An answer to a CHANGE-REQUEST leaves from another group's socket: this
// goroutine writes it there itself, through a batchConn of its own on
// socket i of that group (a UDP socket takes concurrent sends; the runtime
// serialises them with the socket's write lock, uncontended unless two
// goroutines send on one socket at the same instant). No channel, no
// allocation and no lock of ours on the path; a socket has at most four
// writers.
func (s *Server) serveUDP(g *udpGroup, i int, w *workerStats) {
	bc, err := newBatchConn(g.conns[i], s.cfg.Batch)
	if err != nil {
		s.cfg.Logger.Error("stun: udp socket", "addr", g.local.String(), "err", err)
		return
	}
	var out [numRoles]batchConn
	for _, o := range s.udp {
		if o == g {
			out[o.role] = bc
			continue
		}
		if out[o.role], err = newBatchConn(o.conns[i%len(o.conns)], s.cfg.Batch); err != nil {
			s.cfg.Logger.Error("stun: udp socket", "addr", o.local.String(), "err", err)
			return
		}
	}
	d := make([]datagram, s.cfg.Batch)
	mem := make([]byte, s.cfg.Batch*(udpBufSize+respBufSize))
	for i := range d {
		d[i].buf = mem[:udpBufSize:udpBufSize]
		mem = mem[udpBufSize:]
		d[i].outb = mem[:respBufSize:respBufSize]
		mem = mem[respBufSize:]
	}
	r := NewResponder(s.cfg.Software, s.quad)
	var shared *sharedPacketConn
	if g.shared != nil {
		shared = g.shared[i]
	}
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
		var now int64
		if s.lim != nil {
			now = int64(time.Since(s.epoch)) // one monotonic reading per batch
		}
		var via uint8 // bit r: some answer leaves from role r
		for i := 0; i < n; i++ {
			dg := &d[i]
			if shared != nil && forTURN(dg.buf[:dg.n]) {
				// For the server sharing the port (TURN): a copy goes to
				// its queue, or nowhere when the queue is full.
				dg.out = nil
				w.verdicts[Forwarded].Add(1)
				if !shared.push(dg.buf[:dg.n], dg.src) {
					w.fwdDropped.Add(1)
				}
				continue
			}
			rep := r.Respond(dg.buf[:dg.n], dg.src, g.local, dg.outb)
			msg, v := rep.Msg, rep.Verdict
			if msg != nil && s.lim != nil && !s.lim.allow(dg.src.Addr(), now) {
				msg, v = nil, DropRateLimit
			}
			w.verdicts[v].Add(1)
			dg.out = msg
			if msg == nil {
				continue
			}
			if &msg[0] != &dg.outb[0] {
				// A padded response in the Responder's buffer, which the
				// next request reuses: move it to the request's buffer,
				// which is large enough (maxPadded) and free now.
				dg.out = dg.buf[:copy(dg.buf[:cap(dg.buf)], msg)]
			}
			dg.via, dg.dst = rep.From, rep.To
			via |= 1 << rep.From
			if rep.From != g.role {
				w.changed.Add(1)
			}
			if rep.To != dg.src {
				w.responsePort.Add(1)
			}
		}
		for role := Role(0); via != 0; role++ {
			if via&(1<<role) == 0 {
				continue
			}
			via &^= 1 << role
			failed, err := out[role].write(d[:n], role)
			if failed > 0 {
				w.writeErr.Add(uint64(failed))
			}
			if err != nil && isClosed(err) {
				return
			}
		}
	}
}
