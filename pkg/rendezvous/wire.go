package rendezvous

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Wire format (all integers big-endian):
//
//	"NKRV" | version (1) | type (1) | TLV fields... | tag TLV
//
// A TLV is type (1), length (2), value. Fields appear at most once and in
// increasing type order, so every message has one encoding. The first byte
// 'N' (0x4e) has the top bits 01: a rendezvous datagram is never taken for
// STUN (top bits 00, RFC 8489 §5), which the server answers on the same port.
//
// The last field is the tag: an Ed25519 signature by the session key on a
// JOIN, an HMAC-SHA256 (truncated to 16 bytes) under the peer's token on
// every later message in either direction, and absent on HELLO, COOKIE and
// ERROR, which carry a nonce instead. The tag covers every byte before it.

// Magic opens every rendezvous message.
const Magic = "NKRV"

// Version is the protocol version this package speaks.
const Version = 1

// MaxMessageSize bounds a message on any transport: below the IPv6 minimum
// MTU less headers (RFC 8200 §5), so datagrams are never fragmented.
const MaxMessageSize = 1200

// Field size limits.
const (
	SessionIDSize = 32 // an Ed25519 public key
	NonceSize     = 16
	TokenSize     = 16
	MACSize       = 16
	SigSize       = 64
	MaxAddrs      = 8
	MaxCard       = 700
	MaxData       = 900
	MaxCode       = 64
	MaxCookie     = 32
	// AddrSize is the largest encoded address: family (1), an IPv6
	// address (16), port (2).
	AddrSize = 1 + 16 + 2
)

// Type is a message type.
type Type uint8

// Message types. Client to server: HELLO, JOIN, READY, SIGNAL, RESULT, LEAVE;
// server to client: COOKIE, JOINED, PAIRED, GO, SIGNAL, RESULTS, ERROR.
const (
	TypeHello   Type = 1  // ask for a cookie and the observed address
	TypeCookie  Type = 2  // the cookie bound to the sender's address
	TypeJoin    Type = 3  // join (or create) a session, signed by the session key
	TypeJoined  Type = 4  // accepted: peer index and token
	TypePaired  Type = 5  // both peers are in: the other's card and address
	TypeReady   Type = 6  // the peer is ready to punch (also measures RTT)
	TypeGo      Type = 7  // start now
	TypeSignal  Type = 8  // opaque data for the other peer (ICE, TCP, relay)
	TypeResult  Type = 9  // the peer's outcome and observations
	TypeResults Type = 10 // both peers' outcomes, merged
	TypeLeave   Type = 11 // the peer is done
	TypeError   Type = 12 // refused, with a code
)

var typeNames = map[Type]string{TypeHello: "HELLO", TypeCookie: "COOKIE", TypeJoin: "JOIN", TypeJoined: "JOINED",
	TypePaired: "PAIRED", TypeReady: "READY", TypeGo: "GO", TypeSignal: "SIGNAL", TypeResult: "RESULT",
	TypeResults: "RESULTS", TypeLeave: "LEAVE", TypeError: "ERROR"}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE(%d)", uint8(t))
}

// Flags of PAIRED.
const (
	// FlagReverse asks the receiver to open the connection: the other peer
	// is not behind a NAT and waits (connection reversal, RFC 5128 §3.2).
	FlagReverse uint8 = 1 << iota
	// FlagWait tells the receiver that the other peer connects to it.
	FlagWait
	// FlagTCP marks a peer that reached the server over TCP only.
	FlagTCP
)

// Message is one decoded rendezvous message. Zero fields are absent.
type Message struct {
	Type      Type
	Session   []byte           // session ID (SessionIDSize)
	Peer      int              // peer index 0 or 1; -1 absent
	Nonce     []byte           // client nonce (NonceSize)
	Cookie    []byte           // server cookie
	Token     []byte           // peer token, only in JOINED
	Observed  netip.AddrPort   // an address as the server saw it
	Addrs     []netip.AddrPort // the sender's local addresses
	Card      []byte           // opaque peer description, passed through
	PairNonce []byte           // shared by both peers of a pair
	Flags     uint8
	Millis    uint32 // RTT, expiry or delay, per type
	Seq       uint32
	Ack       uint32
	Data      []byte // opaque SIGNAL or RESULT payload
	Other     []byte // the other peer's RESULT in RESULTS
	Code      string // ERROR code
	Tag       []byte // signature or MAC; set by Seal
}

// field types, in encoding order.
const (
	fSession   = 1
	fPeer      = 2
	fNonce     = 3
	fCookie    = 4
	fToken     = 5
	fObserved  = 6
	fAddrs     = 7
	fCard      = 8
	fPairNonce = 9
	fFlags     = 10
	fMillis    = 11
	fSeq       = 12
	fAck       = 13
	fData      = 14
	fOther     = 15
	fCode      = 16
	fTag       = 255
)

// Errors of Unmarshal.
var (
	ErrNotRendezvous = errors.New("rendezvous: not a rendezvous message")
	ErrVersion       = errors.New("rendezvous: unsupported protocol version")
	ErrMalformed     = errors.New("rendezvous: malformed message")
	ErrTooLarge      = errors.New("rendezvous: message too large")
)

// IsMessage reports whether b starts like a rendezvous message.
func IsMessage(b []byte) bool { return len(b) >= 6 && string(b[:4]) == Magic }

// Marshal encodes m without its tag (Seal adds one). It fails when a field
// is over its limit.
func Marshal(m *Message) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, Magic...)
	b = append(b, Version, byte(m.Type))
	var err error
	put := func(t byte, v []byte, max int) {
		if v == nil || err != nil {
			return
		}
		if len(v) > max {
			err = fmt.Errorf("%w: field %d is %d bytes, at most %d", ErrTooLarge, t, len(v), max)
			return
		}
		b = append(b, t)
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
	}
	u32 := func(t byte, v uint32) {
		if v != 0 {
			put(t, binary.BigEndian.AppendUint32(nil, v), 4)
		}
	}
	put(fSession, m.Session, SessionIDSize)
	if m.Peer >= 0 && m.Peer <= 1 {
		put(fPeer, []byte{byte(m.Peer)}, 1)
	}
	put(fNonce, m.Nonce, NonceSize)
	put(fCookie, m.Cookie, MaxCookie)
	put(fToken, m.Token, TokenSize)
	if m.Observed.IsValid() {
		put(fObserved, appendAddr(nil, m.Observed), AddrSize)
	}
	if len(m.Addrs) > 0 {
		if len(m.Addrs) > MaxAddrs {
			return nil, fmt.Errorf("%w: %d addresses, at most %d", ErrTooLarge, len(m.Addrs), MaxAddrs)
		}
		var v []byte
		for _, a := range m.Addrs {
			v = appendAddr(v, a)
		}
		put(fAddrs, v, MaxAddrs*AddrSize)
	}
	put(fCard, m.Card, MaxCard)
	put(fPairNonce, m.PairNonce, NonceSize)
	if m.Flags != 0 {
		put(fFlags, []byte{m.Flags}, 1)
	}
	u32(fMillis, m.Millis)
	u32(fSeq, m.Seq)
	u32(fAck, m.Ack)
	put(fData, m.Data, MaxData)
	put(fOther, m.Other, MaxData)
	if m.Code != "" {
		put(fCode, []byte(m.Code), MaxCode)
	}
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageSize-SigSize-3 {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// appendAddr encodes an address as family (4 or 6), IP, port.
func appendAddr(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	if a.Is4() {
		b = append(b, 4)
		v := a.As4()
		b = append(b, v[:]...)
	} else {
		b = append(b, 6)
		v := a.As16()
		b = append(b, v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func readAddr(v []byte) (netip.AddrPort, []byte, error) {
	if len(v) < 1 {
		return netip.AddrPort{}, nil, ErrMalformed
	}
	n := 4
	if v[0] == 6 {
		n = 16
	} else if v[0] != 4 {
		return netip.AddrPort{}, nil, ErrMalformed
	}
	if len(v) < 1+n+2 {
		return netip.AddrPort{}, nil, ErrMalformed
	}
	ip, _ := netip.AddrFromSlice(v[1 : 1+n])
	port := binary.BigEndian.Uint16(v[1+n:])
	return netip.AddrPortFrom(ip, port), v[1+n+2:], nil
}

// Unmarshal decodes b. The returned message aliases b. It checks structure
// only; Open checks the tag.
func Unmarshal(b []byte) (*Message, error) {
	if len(b) > MaxMessageSize {
		return nil, ErrTooLarge
	}
	if !IsMessage(b) {
		return nil, ErrNotRendezvous
	}
	if b[4] != Version {
		return nil, ErrVersion
	}
	m := &Message{Type: Type(b[5]), Peer: -1}
	if _, ok := typeNames[m.Type]; !ok {
		return nil, fmt.Errorf("%w: unknown type %d", ErrMalformed, b[5])
	}
	rest := b[6:]
	last := 0
	for len(rest) > 0 {
		if len(rest) < 3 {
			return nil, ErrMalformed
		}
		t := int(rest[0])
		n := int(binary.BigEndian.Uint16(rest[1:3]))
		if len(rest) < 3+n || t <= last {
			return nil, ErrMalformed
		}
		v := rest[3 : 3+n]
		rest = rest[3+n:]
		last = t
		fixed := func(size int) error {
			if n != size {
				return fmt.Errorf("%w: field %d is %d bytes, want %d", ErrMalformed, t, n, size)
			}
			return nil
		}
		atMost := func(size int) error {
			if n > size {
				return fmt.Errorf("%w: field %d is %d bytes, at most %d", ErrMalformed, t, n, size)
			}
			return nil
		}
		var err error
		switch t {
		case fSession:
			err, m.Session = fixed(SessionIDSize), v
		case fPeer:
			if err = fixed(1); err == nil {
				if v[0] > 1 {
					err = ErrMalformed
				}
				m.Peer = int(v[0])
			}
		case fNonce:
			err, m.Nonce = fixed(NonceSize), v
		case fCookie:
			err, m.Cookie = atMost(MaxCookie), v
		case fToken:
			err, m.Token = fixed(TokenSize), v
		case fObserved:
			var r []byte
			if m.Observed, r, err = readAddr(v); err == nil && len(r) != 0 {
				err = ErrMalformed
			}
		case fAddrs:
			for len(v) > 0 && err == nil {
				var a netip.AddrPort
				if a, v, err = readAddr(v); err == nil {
					m.Addrs = append(m.Addrs, a)
				}
			}
			if len(m.Addrs) > MaxAddrs {
				err = ErrMalformed
			}
		case fCard:
			err, m.Card = atMost(MaxCard), v
		case fPairNonce:
			err, m.PairNonce = fixed(NonceSize), v
		case fFlags:
			if err = fixed(1); err == nil {
				m.Flags = v[0]
			}
		case fMillis, fSeq, fAck:
			if err = fixed(4); err == nil {
				x := binary.BigEndian.Uint32(v)
				switch t {
				case fMillis:
					m.Millis = x
				case fSeq:
					m.Seq = x
				default:
					m.Ack = x
				}
			}
		case fData:
			err, m.Data = atMost(MaxData), v
		case fOther:
			err, m.Other = atMost(MaxData), v
		case fCode:
			err, m.Code = atMost(MaxCode), string(v)
		case fTag:
			if n != MACSize && n != SigSize {
				err = ErrMalformed
			}
			if len(rest) != 0 {
				err = fmt.Errorf("%w: data after the tag", ErrMalformed)
			}
			m.Tag = v
		default:
			// Unknown fields are skipped: later versions may add some.
		}
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// signedPart returns the bytes a tag covers: everything before the tag
// field, or all of b when there is none.
func signedPart(b []byte, m *Message) []byte {
	if m.Tag == nil {
		return b
	}
	return b[:len(b)-len(m.Tag)-3]
}
