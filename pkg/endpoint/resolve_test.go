package endpoint

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
)

type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	ips, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return ips, nil
}

func TestResolve(t *testing.T) {
	r := fakeResolver{
		"dual.test": {netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")},
		"v6.test":   {netip.MustParseAddr("2001:db8::2")},
	}
	tests := []struct {
		in      string
		f       Family
		want    string
		wantErr string
	}{
		{in: "192.0.2.9", f: AnyFamily, want: "192.0.2.9:3478"},
		{in: "[::ffff:192.0.2.9]:1", f: IPv4, want: "192.0.2.9:1"},
		{in: "192.0.2.9", f: IPv6, wantErr: "IPv4 address and IPv6 was asked for"},
		{in: "[2001:db8::9]", f: IPv4, wantErr: "IPv6 address and IPv4 was asked for"},
		{in: "dual.test", f: AnyFamily, want: "[2001:db8::1]:3478"},
		{in: "dual.test", f: IPv4, want: "192.0.2.1:3478"},
		{in: "v6.test", f: IPv4, wantErr: "no address of the family"},
		{in: "missing.test", f: AnyFamily, wantErr: "no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := Parse(tt.in, STUN)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Resolve(context.Background(), r, ep, tt.f)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("Resolve(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}
