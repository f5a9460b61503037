package stunclient

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// Request describes one Binding request.
type Request struct {
	// Attrs are appended to the request, e.g. CHANGE-REQUEST or RESPONSE-PORT
	// for RFC 5780 tests.
	Attrs []stun.Attr
	// Classic sends an RFC 3489 request: a random 128-bit transaction ID
	// instead of the magic cookie.
	Classic bool
	// Method is the request's method: 0 means Binding. Answers must carry
	// the same method; only Binding answers must carry a mapped address
	// (TURN requests use this: Allocate, Refresh, CreatePermission, ...).
	Method uint16
	// Key, when set, signs the request: MESSAGE-INTEGRITY with this key
	// (RFC 8489 §14.5), then FINGERPRINT. The answer's integrity is the
	// caller's to check (Response.Message.CheckIntegrity).
	Key []byte
	// TID, when set, is the transaction ID to use (attributes such as
	// XOR-PEER-ADDRESS of an IPv6 address depend on it); nil picks a
	// random one. It must be fresh for every transaction.
	TID *stun.TransactionID
}

func (r Request) method() uint16 {
	if r.Method == 0 {
		return stun.MethodBinding
	}
	return r.Method
}

// Response is a server's answer to a Binding request.
type Response struct {
	// Mapped is the reflexive address the server saw.
	Mapped netip.AddrPort
	// MappedAttr is the attribute Mapped came from:
	// stun.AttrXORMappedAddress or stun.AttrMappedAddress.
	MappedAttr uint16
	// ResponseOrigin is RESPONSE-ORIGIN or SOURCE-ADDRESS; zero when absent.
	ResponseOrigin netip.AddrPort
	// OtherAddress is OTHER-ADDRESS or CHANGED-ADDRESS; zero when absent.
	OtherAddress netip.AddrPort
	// Software is the server's SOFTWARE attribute.
	Software string
	// RFC3489 reports an RFC 3489 style answer: no magic cookie,
	// MAPPED-ADDRESS without XOR-MAPPED-ADDRESS, or the RFC 3489 attributes
	// SOURCE-ADDRESS / CHANGED-ADDRESS.
	RFC3489 bool
	// RTT is measured from the last request sent before the answer arrived
	// (an answer to an earlier copy makes it an underestimate); Elapsed
	// from the first.
	RTT     time.Duration
	Elapsed time.Duration
	// Local is the local address of the socket; From is where the answer
	// came from (not necessarily the address the request went to).
	Local netip.AddrPort
	From  netip.AddrPort
	// Attempts is the number of requests sent (1 + retransmissions).
	Attempts int
	// Message is the decoded answer; it owns its bytes.
	Message *stun.Message
}

// Retransmissions is Attempts-1.
func (r *Response) Retransmissions() int { return max(r.Attempts-1, 0) }

// Errors a transaction can end with besides I/O errors.
var (
	// ErrTimeout means no answer came within the transaction's budget.
	ErrTimeout = errors.New("no answer")
	// ErrClosed means the PacketConn's reader was closed.
	ErrClosed = errors.New("stunclient: connection closed")
)

// TimeoutError is a transaction that got no answer; errors.Is(err,
// ErrTimeout) holds for it.
type TimeoutError struct {
	Attempts int           // requests sent
	After    time.Duration // how long it waited
	Cause    error         // the context's error when its deadline ended the wait
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("no answer after %d request(s) in %v", e.Attempts, e.After.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrTimeout) true.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Unwrap returns the context's error, if any.
func (e *TimeoutError) Unwrap() error { return e.Cause }

// ErrorResponse is a Binding error response (class 0x11x).
type ErrorResponse struct {
	Code   int
	Reason string
	// Response holds what else the answer carried (From, RTT, Software...).
	Response *Response
}

func (e *ErrorResponse) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("server answered error %d", e.Code)
	}
	return fmt.Sprintf("server answered error %d %s", e.Code, e.Reason)
}

// MalformedError is an answer that matched our transaction but could not be
// used: a success response without a mapped address, or a bad attribute.
type MalformedError struct {
	Reason   string
	Response *Response
}

func (e *MalformedError) Error() string { return "malformed answer: " + e.Reason }

// transaction is one request on the wire.
type transaction struct {
	key [16]byte // cookie + TID as sent
	raw []byte
}

func newTransaction(cfg Config, req Request) (*transaction, error) {
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	cookie := uint32(stun.MagicCookie)
	if req.Classic {
		cookie = binary.BigEndian.Uint32(key[0:4])
		if cookie == stun.MagicCookie {
			cookie ^= 1
		}
	}
	binary.BigEndian.PutUint32(key[0:4], cookie)
	if req.TID != nil && !req.Classic {
		copy(key[4:16], req.TID[:])
	}
	tid := stun.TransactionID(key[4:16])
	b := stun.NewBuilder(make([]byte, 0, 128), stun.NewType(req.method(), stun.ClassRequest), cookie, tid)
	if cfg.Software != "" && !req.Classic {
		// RFC 3489 servers (Vovida stund) reject text attributes whose
		// length is not a multiple of four, so pad with spaces as the
		// RFC 5769 vectors do.
		sw := cfg.Software
		for len(sw)%4 != 0 {
			sw += " "
		}
		b.AddString(stun.AttrSoftware, sw)
	}
	for _, a := range req.Attrs {
		b.Add(a.Type, a.Value)
	}
	if req.Key != nil {
		b.AddIntegrity(req.Key)
		b.AddFingerprint()
	}
	return &transaction{key: key, raw: b.Bytes()}, nil
}

// keyOf returns the 128-bit transaction key of a STUN message in b.
func keyOf(b []byte) (k [16]byte, ok bool) {
	if len(b) < stun.HeaderSize {
		return k, false
	}
	copy(k[:], b[4:20])
	return k, true
}

// interpret turns a matched answer to a Binding request into a Response or
// an error.
func interpret(b []byte, from, local netip.AddrPort, attempts int, rtt, elapsed time.Duration) (*Response, error) {
	return interpretFor(stun.MethodBinding, b, from, local, attempts, rtt, elapsed)
}

// interpretFor interprets an answer to a request of the given method.
func interpretFor(method uint16, b []byte, from, local netip.AddrPort, attempts int, rtt, elapsed time.Duration) (*Response, error) {
	raw := append([]byte(nil), b...)
	m, err := stun.Parse(raw)
	if err != nil {
		return nil, &MalformedError{Reason: err.Error(), Response: &Response{From: from, Local: local, Attempts: attempts, RTT: rtt, Elapsed: elapsed}}
	}
	r := &Response{
		Software: strings.TrimRight(m.Software(), " \x00"),
		RTT:      rtt,
		Elapsed:  elapsed,
		Local:    local,
		From:     from,
		Attempts: attempts,
		Message:  m,
	}
	r.ResponseOrigin, _ = m.ResponseOrigin()
	r.OtherAddress, _ = m.OtherAddress()
	if m.Type.Method() != method {
		return nil, &MalformedError{Reason: "answer is a " + m.Type.String(), Response: r}
	}
	switch m.Type.Class() {
	case stun.ClassError:
		code, reason, err := m.ErrorCode()
		if err != nil {
			return nil, &MalformedError{Reason: "error response without a valid ERROR-CODE", Response: r}
		}
		return nil, &ErrorResponse{Code: code, Reason: reason, Response: r}
	case stun.ClassSuccess:
	default:
		return nil, &MalformedError{Reason: "answer is a " + m.Type.String(), Response: r}
	}
	if method != stun.MethodBinding {
		r.Mapped, r.MappedAttr, _ = m.MappedAddress()
		r.Mapped = netip.AddrPortFrom(r.Mapped.Addr().Unmap(), r.Mapped.Port())
		return r, nil
	}
	r.Mapped, r.MappedAttr, err = m.MappedAddress()
	if err != nil {
		return nil, &MalformedError{Reason: "no usable XOR-MAPPED-ADDRESS or MAPPED-ADDRESS: " + err.Error(), Response: r}
	}
	r.Mapped = netip.AddrPortFrom(r.Mapped.Addr().Unmap(), r.Mapped.Port())
	r.RFC3489 = m.Classic() || r.MappedAttr == stun.AttrMappedAddress ||
		m.Has(stun.AttrSourceAddress) || m.Has(stun.AttrChangedAddress)
	return r, nil
}

// Attribute is one attribute of a message in readable form.
type Attribute struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Attributes lists m's attributes for display: addresses as IP:PORT (XOR
// undone), text as text, ERROR-CODE as "code reason", the rest in hex.
func Attributes(m *stun.Message) []Attribute {
	if m == nil {
		return nil
	}
	out := make([]Attribute, 0, len(m.Attrs))
	for _, a := range m.Attrs {
		v := hex.EncodeToString(a.Value)
		switch a.Type {
		case stun.AttrMappedAddress, stun.AttrXORMappedAddress, stun.AttrResponseOrigin, stun.AttrOtherAddress,
			stun.AttrSourceAddress, stun.AttrChangedAddress, stun.AttrResponseAddress, stun.AttrAlternateServer,
			stun.AttrXORPeerAddress, stun.AttrXORRelayedAddress:
			var ap netip.AddrPort
			var err error
			switch a.Type {
			case stun.AttrXORMappedAddress, stun.AttrXORPeerAddress, stun.AttrXORRelayedAddress:
				ap, err = stun.DecodeXORAddress(a.Value, m.Cookie, m.TID)
			default:
				ap, err = stun.DecodeAddress(a.Value)
			}
			if err == nil {
				v = ap.String()
			}
		case stun.AttrSoftware, stun.AttrRealm, stun.AttrUsername:
			v = strings.ToValidUTF8(strings.TrimRight(string(a.Value), " \x00"), "?")
		case stun.AttrErrorCode:
			if len(a.Value) >= 4 {
				v = fmt.Sprintf("%d %s", int(a.Value[2]&7)*100+int(a.Value[3]), strings.ToValidUTF8(string(a.Value[4:]), "?"))
			}
		}
		out = append(out, Attribute{Type: stun.AttrName(a.Type), Value: v})
	}
	return out
}

// addrPortOf converts a net.Addr to netip.AddrPort (zero when it cannot).
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
