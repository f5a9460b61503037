// Package stun encodes and decodes STUN messages — RFC 5389/8489 and the
// classic RFC 3489 form without a magic cookie — as pure functions over bytes.
package stun

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MagicCookie is the fixed value in bytes 4..7 of every RFC 5389 message.
const MagicCookie = 0x2112A442

// HeaderSize is the size of the STUN message header.
const HeaderSize = 20

// Methods (RFC 8489 §18.2, RFC 8656 §17).
const (
	MethodBinding          uint16 = 0x001
	MethodAllocate         uint16 = 0x003
	MethodRefresh          uint16 = 0x004
	MethodSend             uint16 = 0x006
	MethodData             uint16 = 0x007
	MethodCreatePermission uint16 = 0x008
	MethodChannelBind      uint16 = 0x009
)

// Classes (RFC 8489 §5).
const (
	ClassRequest    uint16 = 0x00
	ClassIndication uint16 = 0x01
	ClassSuccess    uint16 = 0x02
	ClassError      uint16 = 0x03
)

// Message types for Binding.
var (
	BindingRequest  = NewType(MethodBinding, ClassRequest)
	BindingSuccess  = NewType(MethodBinding, ClassSuccess)
	BindingError    = NewType(MethodBinding, ClassError)
	BindingIndicate = NewType(MethodBinding, ClassIndication)
)

// Type is a STUN message type: a method and a class interleaved as in RFC 8489 §5.
type Type uint16

// NewType builds a message type from a method and a class.
func NewType(method, class uint16) Type {
	m := method & 0x0fff
	t := (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2)
	t |= (class & 0x1) << 4
	t |= (class & 0x2) << 7
	return Type(t)
}

// Method returns the method of t.
func (t Type) Method() uint16 {
	v := uint16(t)
	return (v & 0x000f) | ((v & 0x00e0) >> 1) | ((v & 0x3e00) >> 2)
}

// Class returns the class of t.
func (t Type) Class() uint16 {
	v := uint16(t)
	return ((v >> 4) & 0x1) | ((v >> 7) & 0x2)
}

func (t Type) String() string {
	classes := [...]string{"request", "indication", "success response", "error response"}
	methods := map[uint16]string{
		MethodBinding: "Binding", MethodAllocate: "Allocate", MethodRefresh: "Refresh", MethodSend: "Send",
		MethodData: "Data", MethodCreatePermission: "CreatePermission", MethodChannelBind: "ChannelBind",
	}
	m, ok := methods[t.Method()]
	if !ok {
		m = fmt.Sprintf("method 0x%03x", t.Method())
	}
	return m + " " + classes[t.Class()]
}

// TransactionID is the 96-bit RFC 5389 transaction ID. For classic RFC 3489
// messages the 128-bit ID is the magic-cookie slot followed by this value.
type TransactionID [12]byte

// Attr is one attribute; Value aliases the decoded buffer.
type Attr struct {
	Type  uint16
	Value []byte
}

// Message is a decoded STUN message. Attrs alias the buffer passed to Decode.
type Message struct {
	Type Type
	// Cookie is bytes 4..7: MagicCookie for RFC 5389 messages, the first
	// part of the transaction ID for classic RFC 3489 ones.
	Cookie uint32
	TID    TransactionID
	Attrs  []Attr
	// Raw is the whole message as decoded.
	Raw []byte
}

// Classic reports whether m is an RFC 3489 message (no magic cookie).
func (m *Message) Classic() bool { return m.Cookie != MagicCookie }

// Errors returned by Decode.
var (
	ErrTooShort     = errors.New("stun: message shorter than its header")
	ErrNotSTUN      = errors.New("stun: first two bits are not zero")
	ErrBadLength    = errors.New("stun: length field does not match the message")
	ErrBadAttribute = errors.New("stun: attribute runs past the end of the message")
	ErrNoAttribute  = errors.New("stun: attribute not present")
	ErrBadValue     = errors.New("stun: malformed attribute value")
)

// IsMessage reports whether b looks like one STUN message: header bits, a
// length that is a multiple of four and matches len(b). It does not check the
// magic cookie, so classic messages pass.
func IsMessage(b []byte) bool {
	if len(b) < HeaderSize || b[0]&0xc0 != 0 {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	return n%4 == 0 && HeaderSize+n == len(b)
}

// MessageLength returns the total length of the STUN message starting at b,
// read from its header (for framing on stream transports, RFC 8489 §6.2.2).
func MessageLength(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, ErrTooShort
	}
	if b[0]&0xc0 != 0 {
		return 0, ErrNotSTUN
	}
	return HeaderSize + int(binary.BigEndian.Uint16(b[2:4])), nil
}

// Decode parses b into m, reusing m.Attrs' storage. It checks the header and
// that every attribute (with padding) lies inside the message.
func (m *Message) Decode(b []byte) error {
	if len(b) < HeaderSize {
		return ErrTooShort
	}
	if b[0]&0xc0 != 0 {
		return ErrNotSTUN
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 || HeaderSize+n != len(b) {
		return ErrBadLength
	}
	m.Type = Type(binary.BigEndian.Uint16(b[0:2]))
	m.Cookie = binary.BigEndian.Uint32(b[4:8])
	copy(m.TID[:], b[8:20])
	m.Raw = b
	m.Attrs = m.Attrs[:0]
	for p := b[HeaderSize:]; len(p) > 0; {
		if len(p) < 4 {
			return ErrBadAttribute
		}
		at := binary.BigEndian.Uint16(p[0:2])
		al := int(binary.BigEndian.Uint16(p[2:4]))
		padded := (al + 3) &^ 3
		if 4+padded > len(p) {
			return ErrBadAttribute
		}
		m.Attrs = append(m.Attrs, Attr{Type: at, Value: p[4 : 4+al]})
		p = p[4+padded:]
	}
	return nil
}

// Parse decodes b into a new Message.
func Parse(b []byte) (*Message, error) {
	m := &Message{}
	if err := m.Decode(b); err != nil {
		return nil, err
	}
	return m, nil
}

// Get returns the value of the first attribute of type t.
func (m *Message) Get(t uint16) ([]byte, bool) {
	for _, a := range m.Attrs {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

// Has reports whether m carries an attribute of type t.
func (m *Message) Has(t uint16) bool {
	_, ok := m.Get(t)
	return ok
}
