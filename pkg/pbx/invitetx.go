package pbx

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/rawudp"
)

// A branch of a fork over UDP to an IP address runs a client INVITE
// transaction of natkit's own (RFC 3261 §17.1.1, with RFC 6026's Accepted
// state) rather than sipgo's: sipgo hands every response to a goroutine
// of its own, runs its transaction machine under two locks and passes the
// response up through a channel to a reader, which passes it to the fork:
// three goroutine switches per response, the largest share of the
// scheduler's and futex's CPU on the call path. Here the read loop
// matches the response by our Via branch and hands it to the fork's
// mailbox; a 100 Trying stops the retransmissions and goes no further.
//
// What the transaction does:
//   - Timer A: the INVITE is resent at T1, 2·T1, 4·T1... while no
//     response came; Timer B (64·T1): no response at all, the branch
//     ends as timed out;
//   - Timer C (3 minutes, RFC 3261 §16.6 step 11, reset by each
//     provisional response): a branch that rings for ever ends as timed
//     out (the fork's ring time cancels it long before);
//   - a 2xx goes to the fork; a retransmission of it, until the fork
//     terminates the transaction, to the fork's retransmission hook (it
//     goes up, §16.7 step 5), then, unmatched, to strayResponse;
//   - a 3xx–6xx is acknowledged (§17.1.1.3: the ACK has the INVITE's
//     Request-URI, top Via, Route, From, Call-ID and CSeq number and the
//     response's To), goes to the fork, and its retransmissions get the
//     same ACK again until Timer D (32 s) ends the transaction.
//
// CANCEL stays with sipgo (sendCancel: a non-INVITE transaction, rare):
// its responses carry the INVITE's branch but CSeq CANCEL, and only an
// INVITE's responses match here. Everything not matched here goes to
// sipgo as before.

// ownBranchMark follows the last '.' of the Via branch of an INVITE sent
// in an inviteTx (a sipgo transaction's branch has hex digits there, a
// request forwarded statelessly "s").
const ownBranchMark = "i"

// ownBranch reports whether a branch of our Via is an inviteTx's.
func ownBranch(br string) bool {
	i := strings.LastIndexByte(br, '.')
	return strings.HasPrefix(br, branchPrefix) && i >= 0 && strings.HasPrefix(br[i+1:], ownBranchMark)
}

// txTimers are an inviteTx's timers: RFC 3261's (sipgo's values), Timer
// C of §16.6 step 11 more than 3 minutes. Tests shorten them.
type txTimers struct{ A, B, C, D time.Duration }

func defaultTxTimers() txTimers {
	return txTimers{A: sip.Timer_A, B: sip.Timer_B, C: 3*time.Minute + time.Second, D: sip.Timer_D}
}

// inviteTx states.
const (
	txCalling = iota
	txProceeding
	txAccepted
	txCompleted
	txTerminated
)

// inviteTxs are the live inviteTxs by branch.
type inviteTxs struct {
	mu sync.RWMutex
	m  map[string]*inviteTx
}

func (t *inviteTxs) get(br string) *inviteTx {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.m[br]
}

func (t *inviteTxs) add(tx *inviteTx) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*inviteTx{}
	}
	t.m[tx.branch] = tx
}

func (t *inviteTxs) remove(tx *inviteTx) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[tx.branch] == tx {
		delete(t.m, tx.branch)
	}
}

func (t *inviteTxs) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

// inviteTx is one client INVITE transaction over UDP.
type inviteTx struct {
	table  *inviteTxs
	pc     *rawudp.Conn
	dst    netip.AddrPort
	branch string
	req    *sip.Request
	wire   []byte // req as sent, resent by Timer A
	// deliver hands a response, or the end of the transaction without a
	// final response, to the fork; it never blocks.
	deliver func(event)
	// retransmission gets the 2xx retransmissions while Accepted.
	retransmission func(*sip.Response)
	log            *slog.Logger
	timers         txTimers

	mu             sync.Mutex
	state          int
	interval       time.Duration // Timer A's next
	timerA, timerB *time.Timer
	timerC, timerD *time.Timer
	ack            []byte // the ACK of a 3xx–6xx, resent on its retransmissions
}

// startInviteTx sends req, an INVITE forked to dst over UDP, from pc in a
// transaction of its own: a new branch with ownBranchMark on req's top Via
// (ours, new: proxyHeaders). An error when it could not be sent.
func (s *Server) startInviteTx(pc *rawudp.Conn, req *sip.Request, dst netip.AddrPort, deliver func(event), retrans func(*sip.Response)) (*inviteTx, error) {
	via := req.Via()
	br, _ := via.Params.Get("branch")
	var r [8]byte
	rand.Read(r[:])
	br = br[:strings.LastIndexByte(br, '.')+1] + ownBranchMark + hex.EncodeToString(r[:])
	via.Params.Add("branch", br)
	var buf bytes.Buffer
	req.StringWrite(&buf)
	tx := &inviteTx{table: &s.invites, pc: pc, dst: dst, branch: br, req: req, wire: buf.Bytes(),
		deliver: deliver, retransmission: retrans, log: s.log, timers: s.txTimers, interval: s.txTimers.A}
	// Held until the timers are set: a response read before then waits.
	tx.mu.Lock()
	defer tx.mu.Unlock()
	s.invites.add(tx)
	if _, err := pc.WriteToUDPAddrPort(tx.wire, dst); err != nil {
		tx.state = txTerminated
		s.invites.remove(tx)
		return nil, err
	}
	tx.timerA = time.AfterFunc(tx.interval, tx.resend)
	tx.timerB = time.AfterFunc(tx.timers.B, func() { tx.timeout(txCalling) })
	return tx, nil
}

// resend is Timer A.
func (tx *inviteTx) resend() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != txCalling {
		return
	}
	tx.send(tx.wire)
	tx.interval *= 2
	tx.timerA = time.AfterFunc(tx.interval, tx.resend)
}

// timeout is Timer B (in Calling) or Timer C (in Proceeding): the branch
// ends without a final response.
func (tx *inviteTx) timeout(in int) {
	tx.mu.Lock()
	if tx.state != in {
		tx.mu.Unlock()
		return
	}
	tx.stopLocked()
	tx.mu.Unlock()
	tx.table.remove(tx)
	tx.deliver(event{done: true, err: sip.ErrTransactionTimeout})
}

// stopLocked ends the transaction: every timer stopped.
func (tx *inviteTx) stopLocked() {
	tx.state = txTerminated
	tx.stopTimers()
	if tx.timerD != nil {
		tx.timerD.Stop()
	}
}

// Terminate ends the transaction (the fork is over with it): later
// responses to its branch go to sipgo, which hands them to strayResponse.
func (tx *inviteTx) Terminate() {
	tx.mu.Lock()
	tx.stopLocked()
	tx.mu.Unlock()
	tx.table.remove(tx)
}

// receive handles a response to the transaction's INVITE, in the read loop.
func (tx *inviteTx) receive(res *sip.Response) {
	tx.mu.Lock()
	state := tx.state
	switch {
	case res.StatusCode < 200:
		switch state {
		case txCalling:
			tx.state = txProceeding
			tx.timerA.Stop()
			tx.timerB.Stop()
			tx.timerC = time.AfterFunc(tx.timers.C, func() { tx.timeout(txProceeding) })
		case txProceeding:
			tx.timerC.Reset(tx.timers.C)
		default:
			tx.mu.Unlock()
			return // late
		}
		tx.mu.Unlock()
		if res.StatusCode > 100 {
			tx.deliver(event{res: res})
		}
	case res.StatusCode < 300:
		switch state {
		case txCalling, txProceeding:
			tx.state = txAccepted
			tx.stopTimers()
			tx.mu.Unlock()
			tx.deliver(event{res: res})
		case txAccepted:
			f := tx.retransmission
			tx.mu.Unlock()
			if f != nil {
				f(res)
			}
		default:
			tx.mu.Unlock()
		}
	default:
		switch state {
		case txCalling, txProceeding:
			tx.state = txCompleted
			tx.stopTimers()
			tx.ack = tx.ackFor(res)
			tx.send(tx.ack)
			tx.timerD = time.AfterFunc(tx.timers.D, tx.Terminate)
			tx.mu.Unlock()
			tx.deliver(event{res: res})
		case txCompleted:
			tx.send(tx.ack)
			tx.mu.Unlock()
		default:
			tx.mu.Unlock()
		}
	}
}

// stopTimers stops the timers of Calling and Proceeding.
func (tx *inviteTx) stopTimers() {
	for _, t := range []*time.Timer{tx.timerA, tx.timerB, tx.timerC} {
		if t != nil {
			t.Stop()
		}
	}
}

// send writes b to the branch's next hop; a failure is logged (Timer A
// or a retransmission of the response tries again).
func (tx *inviteTx) send(b []byte) {
	if _, err := tx.pc.WriteToUDPAddrPort(b, tx.dst); err != nil {
		tx.log.Debug("fork", "contact", tx.req.Recipient.String(), "error", err)
	}
}

// ackFor is the ACK of a 3xx–6xx response (RFC 3261 §17.1.1.3).
func (tx *inviteTx) ackFor(res *sip.Response) []byte {
	req := tx.req
	ack := sip.NewRequest(sip.ACK, req.Recipient)
	ack.AppendHeader(req.Via())
	for _, r := range req.GetHeaders("Route") {
		ack.AppendHeader(r)
	}
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	ack.AppendHeader(req.From())
	if to := res.To(); to != nil {
		ack.AppendHeader(to)
	} else {
		ack.AppendHeader(req.To())
	}
	ack.AppendHeader(req.CallID())
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.ACK})
	ack.SetBody(nil)
	var buf bytes.Buffer
	ack.StringWrite(&buf)
	return buf.Bytes()
}

// mailbox takes a fork's events from its branches without blocking them
// (the read loop delivers to it): forkStage drains it when ready signals.
type mailbox struct {
	mu     sync.Mutex
	q      []event
	closed bool
	ready  chan struct{}
}

func newMailbox() *mailbox { return &mailbox{ready: make(chan struct{}, 1)} }

// put queues ev; dropped once the fork is over.
func (m *mailbox) put(ev event) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.q = append(m.q, ev)
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// take returns the queued events.
func (m *mailbox) take() []event {
	m.mu.Lock()
	defer m.mu.Unlock()
	q := m.q
	m.q = nil
	return q
}

func (m *mailbox) close() {
	m.mu.Lock()
	m.closed = true
	m.q = nil
	m.mu.Unlock()
}
