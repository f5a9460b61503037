package digest

import (
	"fmt"
	"testing"
)

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }

// TestVectors: the request-digest of RFC 2617 §3.5 and RFC 7616 §3.9.1.
func TestVectors(t *testing.T) {
	tests := []struct {
		name                                   string
		alg                                    Algorithm
		user, realm, pw, nonce, cnonce, method string
		uri, want                              string
	}{
		{
			name: "RFC 2617 3.5", alg: MD5, user: "Mufasa", realm: "testrealm@host.com", pw: "Circle Of Life",
			nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", cnonce: "0a4f113b", method: "GET", uri: "/dir/index.html",
			want: "6629fae49393a05397450978507c4ef1",
		},
		{
			name: "RFC 7616 3.9.1 MD5", alg: MD5, user: "Mufasa", realm: "http-auth@example.org", pw: "Circle of Life",
			nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			method: "GET", uri: "/dir/index.html", want: "8ca523f5e9506fed4657c9700eebdbec",
		},
		{
			name: "RFC 7616 3.9.1 SHA-256", alg: SHA256, user: "Mufasa", realm: "http-auth@example.org", pw: "Circle of Life",
			nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			method: "GET", uri: "/dir/index.html", want: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha1 := HA1(tt.alg, tt.user, tt.realm, tt.pw)
			got := string(response(tt.alg, ha1, tt.nonce, "00000001", tt.cnonce, "auth", tt.method, tt.uri))
			if got != tt.want {
				t.Errorf("response %s, want %s", got, tt.want)
			}
		})
	}
}
