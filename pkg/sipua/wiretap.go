package sipua

import (
	"bytes"
	"crypto/sha256"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// maxTap bounds what the wiretap keeps of a stream waiting for the rest of
// a message.
const maxTap = 64 << 10

// wiretap sees every SIP message as the transport reads it, in arrival
// order (sipgo hands messages to the transaction layer on goroutines of
// their own, which reorders 100 and 180), and writes the ladder's
// received rungs. Retransmissions (byte-identical) are left out.
type wiretap struct {
	a      *agent
	mu     sync.Mutex
	seen   map[[32]byte]bool
	stream map[string][]byte // TCP/TLS: bytes of an unfinished message per connection
}

func newWiretap(a *agent) *wiretap {
	return &wiretap{a: a, seen: map[[32]byte]bool{}, stream: map[string][]byte{}}
}

// filter is a sip.TransportReadFilter: it looks and passes data on unchanged.
func (w *wiretap) filter(p sip.TransportReadProps, data []byte) ([]byte, error) {
	from, to := p.RemoteAddr.String(), p.LocalAddr.String()
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.EqualFold(p.Transport, "UDP") {
		w.message(data, from, to)
		return data, nil
	}
	key := to + "|" + from
	buf := append(w.stream[key], data...)
	for {
		buf = bytes.TrimLeft(buf, "\r\n")
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			break
		}
		n := end + 4 + contentLength(buf[:end])
		if n > len(buf) {
			break
		}
		w.message(buf[:n], from, to)
		buf = buf[n:]
	}
	if len(buf) > maxTap {
		buf = nil
	}
	w.stream[key] = append([]byte(nil), buf...)
	return data, nil
}

// message records one message's start line.
func (w *wiretap) message(msg []byte, from, to string) {
	sum := sha256.Sum256(msg)
	if w.seen[sum] {
		return
	}
	w.seen[sum] = true
	line, rest, _ := bytes.Cut(msg, []byte("\r\n"))
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return
	}
	what := f[0]
	if f[0] == "SIP/2.0" {
		what = strings.Join(f[1:], " ")
	}
	head, body, _ := bytes.Cut(rest, []byte("\r\n\r\n"))
	m := Message{TimeMs: msSince(w.a.start), Direction: Received, From: from, To: to, MethodOrStatus: what, SDP: len(bytes.TrimSpace(body)) > 0}
	for _, h := range strings.Split(string(head), "\r\n") {
		k, v, ok := strings.Cut(h, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "CSeq") {
			m.CSeq = strings.Join(strings.Fields(v), " ")
		}
	}
	w.a.mu.Lock()
	w.a.ladder = append(w.a.ladder, m)
	w.a.mu.Unlock()
}

// contentLength reads Content-Length (or l) from a header block; 0 when
// absent or bad.
func contentLength(head []byte) int {
	for _, h := range strings.Split(string(head), "\r\n") {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if strings.EqualFold(k, "Content-Length") || k == "l" {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil && n >= 0 && n <= maxTap {
				return n
			}
		}
	}
	return 0
}
