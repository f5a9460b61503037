package stunclient

import (
	"net/netip"
	"testing"

	"github.com/natkit/natkit/pkg/stun"
)

// FuzzInterpret feeds arbitrary answers to the response interpreter and the
// attribute formatter: neither may panic, and a Response always carries a
// mapped address from the attribute it names.
func FuzzInterpret(f *testing.F) {
	b := stun.NewBuilder(nil, stun.BindingSuccess, stun.MagicCookie, stun.TransactionID{1})
	b.AddXORAddress(stun.AttrXORMappedAddress, netip.MustParseAddrPort("198.51.100.2:40000"))
	b.AddAddress(stun.AttrOtherAddress, netip.MustParseAddrPort("203.0.113.1:3479"))
	b.AddString(stun.AttrSoftware, "x")
	f.Add(b.Bytes())
	e := stun.NewBuilder(nil, stun.BindingError, 1234, stun.TransactionID{2})
	e.AddErrorCode(400, "Bad Request")
	f.Add(e.Bytes())
	c := stun.NewBuilder(nil, stun.BindingSuccess, 77, stun.TransactionID{3})
	c.AddAddress(stun.AttrMappedAddress, netip.MustParseAddrPort("[2001:db8::2]:1"))
	f.Add(c.Bytes())
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := interpret(raw, netip.AddrPort{}, netip.AddrPort{}, 1, 0, 0)
		if err == nil {
			if !r.Mapped.IsValid() || (r.MappedAttr != stun.AttrXORMappedAddress && r.MappedAttr != stun.AttrMappedAddress) {
				t.Fatalf("success without a mapped address: %+v", r)
			}
			Attributes(r.Message)
		}
		if m, err := stun.Parse(raw); err == nil {
			Attributes(m)
		}
	})
}
