package stunserver

import (
	"errors"
	"net/netip"
	"os"
	"time"

	"github.com/natkit/natkit/pkg/udpbatch"
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

// datagram is what handle decides for one datagram of a batch.
type datagram struct {
	out  []byte         // response, nil for none
	via  Role           // socket group to send out from
	dst  netip.AddrPort // where to send out: the source, or its IP at RESPONSE-PORT
	outb []byte         // response buffer
	fwd  bool           // for the sharer's reader (udpWorker.handle, direct)
}

// udpWorker is what reading socket i of group g takes: the batch buffers,
// the connections to answer from and a Responder. One goroutine at a time
// owns it: the socket's goroutine (serveUDP), or, with port sharing, the
// sharer's reader once it reads (sharedPacketConn.ReadFrom), which then
// reads the socket itself and answers Binding inline, with no queue and
// no copy between.
type udpWorker struct {
	s   *Server
	g   *udpGroup
	bc  *udpbatch.Conn
	out [numRoles]*udpbatch.Conn
	in  *udpbatch.Batch // the datagrams read; a padded answer replaces its request
	d   []datagram      // the answers, by index in in.Msgs
	wb  *udpbatch.Batch // kernel structures to write answers with
	wm  []udpbatch.Msg  // the answers leaving from one group
	r   *Responder
	w   *workerStats
}

func (s *Server) newUDPWorker(g *udpGroup, i int, w *workerStats) *udpWorker {
	conn := udpbatch.NewConn
	if s.cfg.Batch <= 1 {
		conn = udpbatch.NewUnbatchedConn
	}
	wk := &udpWorker{s: s, g: g, bc: conn(g.conns[i]), w: w, r: NewResponder(s.cfg.Software, s.quad)}
	for _, o := range s.udp {
		if o == g {
			wk.out[o.role] = wk.bc
		} else {
			wk.out[o.role] = conn(o.conns[i%len(o.conns)])
		}
	}
	n := s.cfg.Batch
	wk.in = udpbatch.NewBatch(n, udpBufSize, 0)
	wk.wb = udpbatch.NewBatch(n, 0, 0)
	wk.wm = make([]udpbatch.Msg, 0, n)
	wk.d = make([]datagram, n)
	mem := make([]byte, n*respBufSize)
	for i := range wk.d {
		wk.d[i].outb = mem[:respBufSize:respBufSize]
		mem = mem[respBufSize:]
	}
	return wk
}

// read waits for a batch: in.Msgs[:n].
func (wk *udpWorker) read() (n int, err error) { return wk.bc.ReadInto(wk.in) }

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
	wk := s.newUDPWorker(g, i, w)
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
		n, err := wk.read()
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

// handle answers the batch in.Msgs[:n] and writes the answers. Datagrams for the
// sharer are pushed to its queue (direct false), or marked fwd, to be
// returned by its reader (direct true). It returns false once the sockets
// are closed.
func (wk *udpWorker) handle(n int, shared *sharedPacketConn, direct bool) bool {
	s, g, w, d, in := wk.s, wk.g, wk.w, wk.d, wk.in.Msgs
	w.batches.Add(1)
	var now int64
	if s.lim != nil {
		now = s.lim.Now() // one clock reading per batch
	}
	var via uint8 // bit r: some answer leaves from role r
	for i := 0; i < n; i++ {
		dg, m := &d[i], &in[i]
		dg.fwd, dg.out = false, nil
		req := m.Data()
		if (direct || shared != nil) && forTURN(req) {
			// For the server sharing the port (TURN): its reader takes it
			// from here, or a copy goes to its queue, or nowhere when the
			// queue is full.
			w.verdicts[Forwarded].Add(1)
			if direct {
				dg.fwd = true
			} else if !shared.push(req, m.Addr) {
				w.fwdDropped.Add(1)
			}
			continue
		}
		rep := wk.r.Respond(req, m.Addr, g.local, dg.outb)
		msg, v := rep.Msg, rep.Verdict
		if msg != nil && s.lim != nil && !s.lim.AllowAt(m.Addr.Addr(), now) {
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
			dg.out = m.Buf[:copy(m.Buf, msg)]
		}
		dg.via, dg.dst = rep.From, rep.To
		via |= 1 << rep.From
		if rep.From != g.role {
			w.changed.Add(1)
		}
		if rep.To != m.Addr {
			w.responsePort.Add(1)
		}
	}
	for role := Role(0); via != 0; role++ {
		if via&(1<<role) == 0 {
			continue
		}
		via &^= 1 << role
		wm := wk.wm[:0]
		for i := range d[:n] {
			if dg := &d[i]; dg.out != nil && dg.via == role {
				wm = append(wm, udpbatch.Msg{Buf: dg.out, N: len(dg.out), Addr: dg.dst})
			}
		}
		failed, err := wk.out[role].Write(wk.wb, wm)
		if failed > 0 {
			w.writeErr.Add(uint64(failed))
		}
		if err != nil && isClosed(err) {
			return false
		}
	}
	return true
}
