package stunserver

import (
	"errors"
	"os"
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

// udpWorker is what reading socket i of group g takes: the batch buffers,
// the batchConns to answer from and a Responder. One goroutine at a time
// owns it: the socket's goroutine (serveUDP), or, with port sharing, the
// sharer's reader once it reads (sharedPacketConn.ReadFrom), which then
// reads the socket itself and answers Binding inline, with no queue and
// no copy between.
type udpWorker struct {
	s   *Server
	g   *udpGroup
	bc  batchConn
	out [numRoles]batchConn
	d   []datagram
	r   *Responder
	w   *workerStats
}

func (s *Server) newUDPWorker(g *udpGroup, i int, w *workerStats) (*udpWorker, error) {
	bc, err := newBatchConn(g.conns[i], s.cfg.Batch)
	if err != nil {
		s.cfg.Logger.Error("stun: udp socket", "addr", g.local.String(), "err", err)
		return nil, err
	}
	wk := &udpWorker{s: s, g: g, bc: bc, w: w, r: NewResponder(s.cfg.Software, s.quad)}
	for _, o := range s.udp {
		if o == g {
			wk.out[o.role] = bc
			continue
		}
		if wk.out[o.role], err = newBatchConn(o.conns[i%len(o.conns)], s.cfg.Batch); err != nil {
			s.cfg.Logger.Error("stun: udp socket", "addr", o.local.String(), "err", err)
			return nil, err
		}
	}
	wk.d = make([]datagram, s.cfg.Batch)
	mem := make([]byte, s.cfg.Batch*(udpBufSize+respBufSize))
	for i := range wk.d {
		wk.d[i].buf = mem[:udpBufSize:udpBufSize]
		mem = mem[udpBufSize:]
		wk.d[i].outb = mem[:respBufSize:respBufSize]
		mem = mem[respBufSize:]
	}
	return wk, nil
}

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
//
// With port sharing, the goroutine hands the worker to the sharer as soon
// as it reads (see sharedPacketConn), and takes it back when the sharer
// closes.
func (s *Server) serveUDP(g *udpGroup, i int, w *workerStats) {
	wk, err := s.newUDPWorker(g, i, w)
	if err != nil {
		return
	}
	var shared *sharedPacketConn
	if g.shared != nil {
		shared = g.shared[i]
	}
	lender := shared // until the sharer has had the socket and closed
	for {
		if lender != nil && lender.wanted() {
			if wk = lender.lend(wk, s.done); wk == nil {
				return
			}
			lender = nil // closed: never wanted again
		}
		n, err := wk.bc.read(wk.d)
		if err != nil {
			if isClosed(err) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The sharer asked for the socket (or, closing, woke its
				// reader late): not an error of the socket.
				if lender == nil {
					_ = g.conns[i].SetReadDeadline(time.Time{})
				}
				continue
			}
			// ICMP errors reported on the socket and the like: count and
			// go on, pausing briefly so a persistent error cannot spin.
			w.readErr.Add(1)
			time.Sleep(time.Millisecond)
			continue
		}
		if !wk.handle(n, shared, false) {
			return
		}
	}
}

// handle answers the batch d[:n] and writes the answers. Datagrams for the
// sharer are pushed to its queue (direct false), or marked fwd, to be
// returned by its reader (direct true). It returns false once the sockets
// are closed.
func (wk *udpWorker) handle(n int, shared *sharedPacketConn, direct bool) bool {
	s, g, w, d := wk.s, wk.g, wk.w, wk.d
	w.batches.Add(1)
	var now int64
	if s.lim != nil {
		now = int64(time.Since(s.epoch)) // one monotonic reading per batch
	}
	var via uint8 // bit r: some answer leaves from role r
	for i := 0; i < n; i++ {
		dg := &d[i]
		dg.fwd = false
		if (direct || shared != nil) && forTURN(dg.buf[:dg.n]) {
			// For the server sharing the port (TURN): its reader takes it
			// from here, or a copy goes to its queue, or nowhere when the
			// queue is full.
			dg.out = nil
			w.verdicts[Forwarded].Add(1)
			if direct {
				dg.fwd = true
			} else if !shared.push(dg.buf[:dg.n], dg.src) {
				w.fwdDropped.Add(1)
			}
			continue
		}
		rep := wk.r.Respond(dg.buf[:dg.n], dg.src, g.local, dg.outb)
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
		failed, err := wk.out[role].write(d[:n], role)
		if failed > 0 {
			w.writeErr.Add(uint64(failed))
		}
		if err != nil && isClosed(err) {
			return false
		}
	}
	return true
}
