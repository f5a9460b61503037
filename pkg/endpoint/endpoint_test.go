package endpoint

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		in        string
		def       Scheme
		want      string
		transport string
		wantErr   bool
	}{
		{in: "stun.example.net", def: STUN, want: "stun:stun.example.net:3478"},
		{in: "stun.example.net:19302", def: STUN, want: "stun:stun.example.net:19302"},
		{in: "stun:stun.example.net", def: STUN, want: "stun:stun.example.net:3478"},
		{in: "stuns:stun.example.net", def: STUN, want: "stuns:stun.example.net:5349", transport: "tls"},
		{in: "turn:192.0.2.1?transport=tcp", def: STUN, want: "turn:192.0.2.1:3478?transport=tcp", transport: "tcp"},
		{in: "turns:192.0.2.1:443?transport=tcp", def: STUN, want: "turns:192.0.2.1:443", transport: "tls"},
		{in: "[2001:db8::1]:3478", def: STUN, want: "stun:[2001:db8::1]:3478"},
		{in: "2001:db8::1", def: STUN, want: "stun:[2001:db8::1]:3478"},
		{in: "stun:[2001:db8::1]", def: STUN, want: "stun:[2001:db8::1]:3478"},
		{in: "stun://192.0.2.7:3479", def: STUN, want: "stun:192.0.2.7:3479"},
		{in: "sip:alice@pbx.example.org", def: SIP, want: "sip:pbx.example.org:5060"},
		{in: "sips:pbx.example.org", def: SIP, want: "sips:pbx.example.org:5061", transport: "tls"},
		{in: "192.0.2.1", def: Rendezvous, want: "rendezvous:192.0.2.1:3480"},
		{in: "", def: STUN, wantErr: true},
		{in: "host:0", def: STUN, wantErr: true},
		{in: "host:70000", def: STUN, wantErr: true},
		{in: "host:abc", def: STUN, wantErr: true},
		{in: "[2001:db8::1", def: STUN, wantErr: true},
		{in: "[nothost]:1", def: STUN, wantErr: true},
		{in: "stun:host?transport=sctp", def: STUN, wantErr: true},
		{in: "stun:", def: STUN, wantErr: true},
		{in: "a b", def: STUN, wantErr: true},
		{in: "999.1.1.1", def: STUN, wantErr: true},
		{in: "1.2.3", def: STUN, wantErr: true},
		{in: "256.0.0.1:3478", def: STUN, wantErr: true},
		{in: "stun:host.123", def: STUN, wantErr: true},
		{in: "a..b", def: STUN, wantErr: true},
		{in: "stun-1.example.net", def: STUN, want: "stun:stun-1.example.net:3478"},
		{in: "1e100.net", def: STUN, want: "stun:1e100.net:3478"},
		{in: "host.example.", def: STUN, want: "stun:host.example.:3478"},
		{in: "localhost", def: STUN, want: "stun:localhost:3478"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			e, err := Parse(tt.in, tt.def)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want error", tt.in, e)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := e.String(); got != tt.want {
				t.Errorf("Parse(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if e.Transport != tt.transport {
				t.Errorf("Parse(%q).Transport = %q, want %q", tt.in, e.Transport, tt.transport)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"stun:h", "[::1]:1", "turn:h?transport=tcp", "sip:a@b:5", "h:65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s, STUN)
		if err != nil {
			return
		}
		if e.Port < 1 || e.Port > 65535 || e.Host == "" {
			t.Fatalf("Parse(%q) = %+v: invalid endpoint accepted", s, e)
		}
		if _, err := Parse(e.String(), STUN); err != nil {
			t.Fatalf("round trip of %q (%q): %v", s, e.String(), err)
		}
	})
}
