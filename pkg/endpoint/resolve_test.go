package endpoint

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
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
		{in: "v6.test", f: IPv4, wantErr: "cannot resolve v6.test: the name has no IPv4 address"},
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

// stuckResolver never answers: a resolver behind a dead network.
type stuckResolver struct{}

func (stuckResolver) LookupNetIP(ctx context.Context, _, _ string) ([]netip.Addr, error) {
	<-ctx.Done()
	return nil, &net.DNSError{Err: "i/o timeout", IsTimeout: true}
}

// brokenResolver fails at once, as Go's does with no route to the DNS server.
type brokenResolver struct{}

func (brokenResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "dial udp 10.255.255.53:53: connect: network is unreachable", Name: host, Server: "10.255.255.53:53"}
}

func TestResolveFailures(t *testing.T) {
	ep, err := Parse("stun.example.net", STUN)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name              string
		r                 Resolver
		notFound, timeout bool
		msg               string
	}{
		{"not found", fakeResolver{}, true, false, "cannot resolve stun.example.net: no such host"},
		{"stuck", stuckResolver{}, false, true, "cannot resolve stun.example.net: no DNS server answered within 2s"},
		{"broken", brokenResolver{}, false, false, "cannot resolve stun.example.net: DNS server 10.255.255.53:53: network is unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Resolve(context.Background(), tt.r, ep, AnyFamily)
			var re *ResolveError
			if !errors.As(err, &re) || re.NotFound != tt.notFound || re.Timeout != tt.timeout || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Fatalf("err %v (%#v), want a ResolveError %q", err, re, tt.msg)
			}
			// A generous bound: only a resolver left without a deadline
			// (glibc's 2 × 5 s) would exceed it.
			if d := time.Since(start); d > ResolveTimeout+3*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
