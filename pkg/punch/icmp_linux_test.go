package punch

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// recvErrMsg builds an IP_RECVERR (or IPV6_RECVERR) control message as the
// kernel queues it: the extended error, then SO_EE_OFFENDER.
func recvErrMsg(v6 bool, origin, typ, code uint8, offender netip.Addr) []byte {
	var data []byte
	data = binary.NativeEndian.AppendUint32(data, uint32(unix.ECONNREFUSED))
	data = append(data, origin, typ, code, 0)
	data = binary.NativeEndian.AppendUint32(data, 0)
	data = binary.NativeEndian.AppendUint32(data, 0)
	level, kind := unix.IPPROTO_IP, unix.IP_RECVERR
	if v6 {
		level, kind = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
		data = binary.NativeEndian.AppendUint16(data, unix.AF_INET6)
		data = append(data, 0, 0, 0, 0, 0, 0) // port, flow info
		a := offender.As16()
		data = append(data, a[:]...)
		data = append(data, 0, 0, 0, 0) // scope
	} else {
		data = binary.NativeEndian.AppendUint16(data, unix.AF_INET)
		data = append(data, 0, 0)
		a := offender.As4()
		data = append(data, a[:]...)
		data = append(data, make([]byte, 8)...)
	}
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(kind)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func TestParseRefusal(t *testing.T) {
	router := netip.MustParseAddr("198.51.100.11")
	router6 := netip.MustParseAddr("2001:db8::11")
	to := netip.MustParseAddrPort("198.51.100.11:40000")
	tests := []struct {
		name string
		oob  []byte
		want bool
		from netip.Addr
	}{
		{"port unreachable", recvErrMsg(false, unix.SO_EE_ORIGIN_ICMP, 3, 3, router), true, router},
		{"IPv6 port unreachable", recvErrMsg(true, unix.SO_EE_ORIGIN_ICMP6, 1, 4, router6), true, router6},
		{"time exceeded (a prime)", recvErrMsg(false, unix.SO_EE_ORIGIN_ICMP, 11, 0, router), false, netip.Addr{}},
		{"host unreachable", recvErrMsg(false, unix.SO_EE_ORIGIN_ICMP, 3, 1, router), false, netip.Addr{}},
		{"IPv6 hop limit exceeded", recvErrMsg(true, unix.SO_EE_ORIGIN_ICMP6, 3, 0, router6), false, netip.Addr{}},
		{"local error", recvErrMsg(false, 1 /* SO_EE_ORIGIN_LOCAL */, 3, 3, router), false, netip.Addr{}},
		{"truncated", recvErrMsg(false, unix.SO_EE_ORIGIN_ICMP, 3, 3, router)[:20], false, netip.Addr{}},
		{"empty", nil, false, netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := parseRefusal(tt.oob, to)
			if ok != tt.want || (ok && (r.from != tt.from || r.to != to)) {
				t.Errorf("parseRefusal = %+v, %v; want from %v, %v", r, ok, tt.from, tt.want)
			}
		})
	}
}

// FuzzParseRefusal: any control message parses without panicking.
func FuzzParseRefusal(f *testing.F) {
	f.Add(recvErrMsg(false, unix.SO_EE_ORIGIN_ICMP, 3, 3, netip.MustParseAddr("192.0.2.1")))
	f.Add(recvErrMsg(true, unix.SO_EE_ORIGIN_ICMP6, 1, 4, netip.MustParseAddr("2001:db8::1")))
	f.Fuzz(func(t *testing.T, oob []byte) {
		if r, ok := parseRefusal(oob, netip.AddrPort{}); ok && !r.from.IsValid() {
			t.Fatalf("a refusal from no address: %+v", r)
		}
	})
}
