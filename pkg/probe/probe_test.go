package probe_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/probe"
	"github.com/natkit/natkit/pkg/stunclient"
	"github.com/natkit/natkit/pkg/stunclient/stunclienttest"
)

// fast keeps retransmission tests short.
var fast = stunclient.Config{RTO: 40 * time.Millisecond, Timeout: time.Second}

func eps(t *testing.T, addrs ...string) []endpoint.Endpoint {
	t.Helper()
	var out []endpoint.Endpoint
	for _, a := range addrs {
		ep, err := endpoint.Parse(a, endpoint.STUN)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ep)
	}
	return out
}

func run(t *testing.T, o probe.Options) probe.Report {
	t.Helper()
	if o.Client.RTO == 0 {
		o.Client = fast
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := probe.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestRunAgainstServers(t *testing.T) {
	leaktest.Check(t)
	a := stunclienttest.New(t, stunclienttest.Behavior{})
	b := stunclienttest.New(t, stunclienttest.Behavior{Classic: true, Drop: 1})
	p := stunclienttest.NewPion(t)
	rep := run(t, probe.Options{Servers: eps(t, a.Addr.String(), b.Addr.String(), p.UDP.String()), Count: 3})

	if rep.Schema != "natkit.probe/v1" || rep.Answered != 3 || rep.Servers != 3 || rep.Consistent == nil || !*rep.Consistent {
		t.Fatalf("report %+v", rep)
	}
	local := *rep.Results[0].LocalAddress
	if !strings.HasPrefix(local, "127.0.0.1:") || rep.MappedAddress == nil || *rep.MappedAddress != local {
		t.Errorf("mapped %v local %v: on loopback they must be equal", rep.MappedAddress, local)
	}
	for i, r := range rep.Results {
		if !r.Success || *r.LocalAddress != local || *r.MappedAddress != local || r.Sent != 3 || r.Received != 3 || r.Error != nil {
			t.Errorf("result %d: %+v", i, r)
		}
		if *r.RTTMinMs > *r.RTTMedianMs || *r.RTTMedianMs > *r.RTTMaxMs || *r.RTTMs != *r.RTTMedianMs || len(r.Transactions) != 3 {
			t.Errorf("result %d: rtt %v %v %v", i, *r.RTTMinMs, *r.RTTMedianMs, *r.RTTMaxMs)
		}
	}
	if r := rep.Results[1]; *r.MappedAttribute != "MAPPED-ADDRESS" || !*r.RFC3489 || r.Retransmissions != 1 ||
		*r.ResponseOrigin != b.Addr.String() || *r.OtherAddress != b.Alt.String() {
		t.Errorf("RFC 3489 server: %+v", r)
	}
	if r := rep.Results[2]; *r.MappedAttribute != "XOR-MAPPED-ADDRESS" || *r.RFC3489 || r.ResponseOrigin != nil || r.OtherAddress != nil {
		t.Errorf("pion: %+v", r)
	}
}

func TestRunFailures(t *testing.T) {
	leaktest.Check(t)
	silent := stunclienttest.New(t, stunclienttest.Behavior{Silent: true})
	refuse := stunclienttest.New(t, stunclienttest.Behavior{ErrorCode: 401, Reason: "Unauthorized"})
	ok := stunclienttest.New(t, stunclienttest.Behavior{})
	natted := stunclienttest.New(t, stunclienttest.Behavior{Mapped: func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("198.51.100.2"), ap.Port()+1)
	}})
	rep := run(t, probe.Options{
		Servers: eps(t, silent.Addr.String(), refuse.Addr.String(), ok.Addr.String(), natted.Addr.String()),
		Count:   3,
		Client:  stunclient.Config{RTO: 30 * time.Millisecond, Timeout: 200 * time.Millisecond},
	})
	if rep.Answered != 2 || rep.Consistent == nil || *rep.Consistent || rep.MappedAddress != nil {
		t.Errorf("servers disagree: answered %d consistent %v mapped %v", rep.Answered, rep.Consistent, rep.MappedAddress)
	}
	s := rep.Results[0]
	if s.Success || s.Sent != 1 || s.Error == nil || !strings.Contains(*s.Error, "no answer") || s.Retransmissions != 2 {
		t.Errorf("silent: %+v (error %v); must stop after one unanswered transaction", s, s.Error)
	}
	r := rep.Results[1]
	if r.Success || r.ErrorCode == nil || *r.ErrorCode != 401 || *r.Error != "server answered error 401 Unauthorized" || r.Sent != 1 {
		t.Errorf("refusing: %+v", r)
	}
	if len(r.Transactions) != 1 || len(r.Transactions[0].Attributes) == 0 || r.Transactions[0].RTTMs == nil {
		t.Errorf("refusing transactions: %+v", r.Transactions)
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	ips, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return ips, nil
}

func TestFamilies(t *testing.T) {
	leaktest.Check(t)
	v4 := stunclienttest.New(t, stunclienttest.Behavior{})
	v6 := stunclienttest.NewOn(t, "[::1]:0", stunclienttest.Behavior{})
	if v4.Addr.Port() == v6.Addr.Port() {
		t.Skip("port clash")
	}
	res := fakeResolver{
		"both.test": {netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1")},
		"v4.test":   {netip.MustParseAddr("127.0.0.1")},
	}
	tests := []struct {
		name   string
		server string
		family probe.Family
		local  netip.AddrPort
		want   string // server_address, or the error's start
	}{
		{name: "any takes the first", server: "both.test:" + itoa(v6.Addr.Port()), want: v6.Addr.String()},
		{name: "-4", server: "both.test:" + itoa(v4.Addr.Port()), family: probe.IPv4, want: v4.Addr.String()},
		{name: "-6", server: "both.test:" + itoa(v6.Addr.Port()), family: probe.IPv6, want: v6.Addr.String()},
		{name: "local v4 picks v4", server: "both.test:" + itoa(v4.Addr.Port()), local: netip.MustParseAddrPort("127.0.0.1:0"), want: v4.Addr.String()},
		{name: "-6 without v6", server: "v4.test:3478", family: probe.IPv6, want: "error: cannot resolve v4.test: the name has no IPv6 address"},
		{name: "-4 with a v6 literal", server: "[::1]:3478", family: probe.IPv4, want: "error: ::1 is an IPv6 address"},
		{name: "unknown host", server: "nope.test", want: "error: cannot resolve nope.test: no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := run(t, probe.Options{Servers: eps(t, tt.server), Family: tt.family, Local: tt.local, Resolver: res})
			r := rep.Results[0]
			if want, ok := strings.CutPrefix(tt.want, "error: "); ok {
				if r.Success || r.Error == nil || !strings.HasPrefix(*r.Error, want) {
					t.Fatalf("got %+v error %v, want error %q", r, r.Error, want)
				}
				return
			}
			if !r.Success || *r.ServerAddress != tt.want || *r.MappedAddress != *r.LocalAddress {
				t.Fatalf("got %+v (error %v), want success from %s", r, r.Error, tt.want)
			}
		})
	}
}

func itoa(p uint16) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[len("0.0.0.0:"):]
}

func TestStreams(t *testing.T) {
	leaktest.Check(t)
	p := stunclienttest.NewPion(t)
	tests := []struct {
		name    string
		servers []string
		tr      probe.Transport
		tls     *tls.Config
		ok      bool
	}{
		{name: "tcp flag", servers: []string{p.TCP.String()}, tr: probe.TCP, ok: true},
		{name: "tcp uri", servers: []string{"stun:" + p.TCP.String() + "?transport=tcp"}, ok: true},
		{name: "tls trusted", servers: []string{p.TLS.String()}, tr: probe.TLS, tls: &tls.Config{RootCAs: p.Roots}, ok: true},
		{name: "stuns uri", servers: []string{"stuns:" + p.TLS.String()}, tls: &tls.Config{RootCAs: p.Roots}, ok: true},
		{name: "tls untrusted", servers: []string{p.TLS.String()}, tr: probe.TLS},
		{name: "tls insecure", servers: []string{p.TLS.String()}, tr: probe.TLS, tls: &tls.Config{InsecureSkipVerify: true}, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := run(t, probe.Options{Servers: eps(t, tt.servers...), Transport: tt.tr, TLSConfig: tt.tls, Count: 2})
			r := rep.Results[0]
			if r.Success != tt.ok {
				t.Fatalf("success %v, want %v: %+v error %v", r.Success, tt.ok, r, r.Error)
			}
			if tt.ok && (*r.MappedAddress != *r.LocalAddress || r.Received != 2 || r.Transport == "udp") {
				t.Errorf("%+v", r)
			}
		})
	}
}

func TestLocalBind(t *testing.T) {
	leaktest.Check(t)
	s := stunclienttest.New(t, stunclienttest.Behavior{})
	pc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	port := pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	pc.Close()
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	rep := run(t, probe.Options{Servers: eps(t, s.Addr.String()), Local: local})
	if r := rep.Results[0]; !r.Success || *r.LocalAddress != local.String() || *r.MappedAddress != local.String() {
		t.Errorf("%+v", r)
	}
	_, err := probe.Run(context.Background(), probe.Options{Servers: eps(t, s.Addr.String()), Local: netip.MustParseAddrPort("192.0.2.99:0")})
	if !errors.Is(err, probe.ErrBind) {
		t.Errorf("binding a foreign address: %v, want ErrBind", err)
	}
	if _, err := probe.Run(context.Background(), probe.Options{}); !errors.Is(err, probe.ErrNoServers) {
		t.Errorf("no servers: %v", err)
	}
}

// TestJSONKeys checks that every contract key is present, null when unknown.
func TestJSONKeys(t *testing.T) {
	rep := run(t, probe.Options{Servers: eps(t, "nope.test"), Resolver: fakeResolver{}})
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"server", "success", "local_address", "mapped_address", "rtt_ms", "response_origin", "other_address", "software", "error"} {
		v, ok := doc.Results[0][k]
		if !ok {
			t.Errorf("key %q missing", k)
		}
		if k != "server" && k != "success" && k != "error" && v != nil {
			t.Errorf("key %q = %v, want null", k, v)
		}
	}
}
