package sipua

import (
	"errors"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr string
	}{
		{in: "sip:9195@pbx.example.net", want: Target{Scheme: "sip", User: "9195", Host: "pbx.example.net"}},
		{in: "sips:alice@example.net;transport=tls", want: Target{Scheme: "sips", User: "alice", Host: "example.net", Transport: TLS}},
		{in: "SIP:bob@192.0.2.1:5070;transport=TCP;lr", want: Target{Scheme: "sip", User: "bob", Host: "192.0.2.1", Port: 5070, Transport: TCP}},
		{in: "9195@pbx.example.net:5080", want: Target{Scheme: "sip", User: "9195", Host: "pbx.example.net", Port: 5080}},
		{in: "sip:[2001:db8::1]:5062", want: Target{Scheme: "sip", Host: "2001:db8::1", Port: 5062}},
		{in: "service@[::1]", want: Target{Scheme: "sip", User: "service", Host: "::1"}},
		{in: "pbx.example.net", want: Target{Scheme: "sip", Host: "pbx.example.net"}},
		{in: "", wantErr: "empty"},
		{in: "sip:", wantErr: "empty"},
		{in: "tel:+15551234@x", wantErr: "is not sip: or sips:"},
		{in: "sip:alice:secret@example.net", wantErr: "password"},
		{in: "sip:a@b@c", wantErr: "more than one @"},
		{in: "sip:a@host:0", wantErr: "port"},
		{in: "sip:a@host:99999", wantErr: "port"},
		{in: "sip:a@host:", wantErr: "port"},
		{in: "sip:a@2001:db8::1", wantErr: "brackets"},
		{in: "sip:a@[2001:db8::1", wantErr: "closing"},
		{in: "sip:a@999.1.1.1", wantErr: "not an IP address"},
		{in: "sip:a@host;transport=sctp", wantErr: "transport=sctp"},
		{in: "sips:a@host;transport=udp", wantErr: "sips: URI needs transport=tls"},
		{in: "sip:a@host?Subject=x", wantErr: "headers"},
		{in: "sip:@host", wantErr: "user part"},
		{in: "sip:a@ho_st", wantErr: "not allowed in a host"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrTarget) {
					t.Fatalf("got %+v, %v; want error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			// The URI form parses back to the same target.
			again, err := ParseTarget(got.String())
			if err != nil || again != got {
				t.Fatalf("round trip %q: %+v, %v", got.String(), again, err)
			}
		})
	}
	if hp := (Target{Host: "::1"}).HostPort(TLS); hp != "[::1]:5061" {
		t.Errorf("HostPort %s", hp)
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"sip:9195@pbx.example.net", "sips:a@b;transport=tls", "1@[::1]:5060", "x@1.2.3.4:1", "sip:a@b:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s)
		if err != nil {
			return
		}
		if got.Host == "" || got.Port < 0 || got.Port > 65535 {
			t.Fatalf("%q: %+v", s, got)
		}
		again, err := ParseTarget(got.String())
		if err != nil || again != got {
			t.Fatalf("%q → %q → %+v, %v", s, got.String(), again, err)
		}
	})
}
