package stun

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Attribute types (RFC 3489, RFC 5389/8489, RFC 5780, RFC 8656).
const (
	AttrMappedAddress      uint16 = 0x0001
	AttrResponseAddress    uint16 = 0x0002 // RFC 3489, deprecated
	AttrChangeRequest      uint16 = 0x0003
	AttrSourceAddress      uint16 = 0x0004 // RFC 3489
	AttrChangedAddress     uint16 = 0x0005 // RFC 3489
	AttrUsername           uint16 = 0x0006
	AttrMessageIntegrity   uint16 = 0x0008
	AttrErrorCode          uint16 = 0x0009
	AttrUnknownAttributes  uint16 = 0x000A
	AttrChannelNumber      uint16 = 0x000C
	AttrLifetime           uint16 = 0x000D
	AttrXORPeerAddress     uint16 = 0x0012
	AttrData               uint16 = 0x0013
	AttrRealm              uint16 = 0x0014
	AttrNonce              uint16 = 0x0015
	AttrXORRelayedAddress  uint16 = 0x0016
	AttrRequestedTransport uint16 = 0x0019
	AttrXORMappedAddress   uint16 = 0x0020
	AttrPadding            uint16 = 0x0026
	AttrResponsePort       uint16 = 0x0027
	AttrSoftware           uint16 = 0x8022
	AttrAlternateServer    uint16 = 0x8023
	AttrFingerprint        uint16 = 0x8028
	AttrResponseOrigin     uint16 = 0x802B
	AttrOtherAddress       uint16 = 0x802C
)

// Address families in address attributes.
const (
	familyIPv4 = 0x01
	familyIPv6 = 0x02
)

// ChangeRequest flags (RFC 5780 §7.2).
const (
	ChangeIP   uint32 = 0x04
	ChangePort uint32 = 0x02
)

// DecodeAddress parses a MAPPED-ADDRESS style value.
func DecodeAddress(v []byte) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, ErrBadValue
	}
	port := binary.BigEndian.Uint16(v[2:4])
	switch v[1] {
	case familyIPv4:
		if len(v) != 8 {
			return netip.AddrPort{}, ErrBadValue
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[4:8])), port), nil
	case familyIPv6:
		if len(v) != 20 {
			return netip.AddrPort{}, ErrBadValue
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(v[4:20])), port), nil
	}
	return netip.AddrPort{}, ErrBadValue
}

// DecodeXORAddress parses an XOR-MAPPED-ADDRESS style value using the
// cookie and transaction ID of the message that carries it.
func DecodeXORAddress(v []byte, cookie uint32, tid TransactionID) (netip.AddrPort, error) {
	ap, err := DecodeAddress(v)
	if err != nil {
		return ap, err
	}
	return xorAddr(ap, cookie, tid), nil
}

func xorAddr(ap netip.AddrPort, cookie uint32, tid TransactionID) netip.AddrPort {
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], cookie)
	copy(key[4:], tid[:])
	port := ap.Port() ^ uint16(cookie>>16)
	if ap.Addr().Is4() {
		a := ap.Addr().As4()
		for i := range a {
			a[i] ^= key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom4(a), port)
	}
	a := ap.Addr().As16()
	for i := range a {
		a[i] ^= key[i]
	}
	return netip.AddrPortFrom(netip.AddrFrom16(a), port)
}

// Address returns the address attribute t, undoing the XOR for XOR-*
// attributes.
func (m *Message) Address(t uint16) (netip.AddrPort, error) {
	v, ok := m.Get(t)
	if !ok {
		return netip.AddrPort{}, ErrNoAttribute
	}
	switch t {
	case AttrXORMappedAddress, AttrXORPeerAddress, AttrXORRelayedAddress:
		return DecodeXORAddress(v, m.Cookie, m.TID)
	}
	return DecodeAddress(v)
}

// MappedAddress returns the reflexive address: XOR-MAPPED-ADDRESS when
// present, else MAPPED-ADDRESS (RFC 3489 servers), and which it used.
func (m *Message) MappedAddress() (netip.AddrPort, uint16, error) {
	if ap, err := m.Address(AttrXORMappedAddress); err == nil {
		return ap, AttrXORMappedAddress, nil
	}
	ap, err := m.Address(AttrMappedAddress)
	return ap, AttrMappedAddress, err
}

// OtherAddress returns OTHER-ADDRESS (RFC 5780) or, failing that,
// CHANGED-ADDRESS (RFC 3489).
func (m *Message) OtherAddress() (netip.AddrPort, error) {
	if ap, err := m.Address(AttrOtherAddress); err == nil {
		return ap, nil
	}
	return m.Address(AttrChangedAddress)
}

// ResponseOrigin returns RESPONSE-ORIGIN (RFC 5780) or, failing that,
// SOURCE-ADDRESS (RFC 3489).
func (m *Message) ResponseOrigin() (netip.AddrPort, error) {
	if ap, err := m.Address(AttrResponseOrigin); err == nil {
		return ap, nil
	}
	return m.Address(AttrSourceAddress)
}

// Software returns the SOFTWARE attribute, or "".
func (m *Message) Software() string {
	v, _ := m.Get(AttrSoftware)
	return string(v)
}

// ErrorCode returns the ERROR-CODE attribute: code and reason phrase.
func (m *Message) ErrorCode() (int, string, error) {
	v, ok := m.Get(AttrErrorCode)
	if !ok {
		return 0, "", ErrNoAttribute
	}
	if len(v) < 4 {
		return 0, "", ErrBadValue
	}
	code := int(v[2]&0x7)*100 + int(v[3])
	return code, string(v[4:]), nil
}

// ChangeRequest returns the CHANGE-REQUEST flags (ChangeIP, ChangePort).
func (m *Message) ChangeRequest() (uint32, bool, error) {
	v, ok := m.Get(AttrChangeRequest)
	if !ok {
		return 0, false, nil
	}
	if len(v) != 4 {
		return 0, true, ErrBadValue
	}
	return binary.BigEndian.Uint32(v), true, nil
}

// ResponsePort returns the RESPONSE-PORT attribute (RFC 5780 §7.5).
func (m *Message) ResponsePort() (uint16, bool, error) {
	v, ok := m.Get(AttrResponsePort)
	if !ok {
		return 0, false, nil
	}
	if len(v) != 4 {
		return 0, true, ErrBadValue
	}
	return binary.BigEndian.Uint16(v[0:2]), true, nil
}

// Uint32 returns a 32-bit attribute value such as LIFETIME.
func (m *Message) Uint32(t uint16) (uint32, error) {
	v, ok := m.Get(t)
	if !ok {
		return 0, ErrNoAttribute
	}
	if len(v) != 4 {
		return 0, ErrBadValue
	}
	return binary.BigEndian.Uint32(v), nil
}

// AttrName names an attribute type for debug output.
func AttrName(t uint16) string {
	names := map[uint16]string{
		AttrMappedAddress: "MAPPED-ADDRESS", AttrResponseAddress: "RESPONSE-ADDRESS", AttrChangeRequest: "CHANGE-REQUEST",
		AttrSourceAddress: "SOURCE-ADDRESS", AttrChangedAddress: "CHANGED-ADDRESS", AttrUsername: "USERNAME",
		AttrMessageIntegrity: "MESSAGE-INTEGRITY", AttrErrorCode: "ERROR-CODE", AttrUnknownAttributes: "UNKNOWN-ATTRIBUTES",
		AttrChannelNumber: "CHANNEL-NUMBER", AttrLifetime: "LIFETIME", AttrXORPeerAddress: "XOR-PEER-ADDRESS",
		AttrData: "DATA", AttrRealm: "REALM", AttrNonce: "NONCE", AttrXORRelayedAddress: "XOR-RELAYED-ADDRESS",
		AttrRequestedTransport: "REQUESTED-TRANSPORT", AttrXORMappedAddress: "XOR-MAPPED-ADDRESS", AttrPadding: "PADDING",
		AttrResponsePort: "RESPONSE-PORT", AttrSoftware: "SOFTWARE", AttrAlternateServer: "ALTERNATE-SERVER",
		AttrFingerprint: "FINGERPRINT", AttrResponseOrigin: "RESPONSE-ORIGIN", AttrOtherAddress: "OTHER-ADDRESS",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("0x%04X", t)
}
