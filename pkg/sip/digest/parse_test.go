package digest

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  Credentials
		err   bool
	}{
		{
			name:  "sipgo client",
			value: `Digest username="alice", realm="natkit", nonce="abc", uri="sip:natkit.test", algorithm=SHA-256, cnonce="0a4f113b", qop=auth, nc=00000001, response="6629fae4"`,
			want:  Credentials{Scheme: "Digest", Username: "alice", Realm: "natkit", Nonce: "abc", URI: "sip:natkit.test", Algorithm: "SHA-256", Cnonce: "0a4f113b", QOP: "auth", NC: "00000001", Response: "6629fae4"},
		},
		{
			name:  "escapes and commas in quotes",
			value: `Digest username="a\"l,i=ce\\", realm="r, with comma", nonce="n"`,
			want:  Credentials{Scheme: "Digest", Username: `a"l,i=ce\`, Realm: "r, with comma", Nonce: "n"},
		},
		{
			name:  "case, spaces, empty elements, unknown params",
			value: "digest   USERNAME = \"bob\" ,, Foo=bar,\t qop=auth ,",
			want:  Credentials{Scheme: "digest", Username: "bob", QOP: "auth"},
		},
		{
			name:  "quoted qop, userhash",
			value: `Digest qop="auth", userhash=true, username="x"`,
			want:  Credentials{Scheme: "Digest", QOP: "auth", Userhash: true, Username: "x"},
		},
		{name: "empty", value: "", err: true},
		{name: "scheme only", value: "Digest", err: true},
		{name: "scheme and space", value: "Digest ", err: true},
		{name: "unterminated quote", value: `Digest username="alice`, err: true},
		{name: "escape at end", value: `Digest username="alice\`, err: true},
		{name: "no value", value: `Digest username=, realm="r"`, err: true},
		{name: "no equals", value: `Digest username`, err: true},
		{name: "duplicate", value: `Digest username="a", Username="b"`, err: true},
		{name: "junk after value", value: `Digest username="a" realm="b"`, err: true},
		{name: "too long", value: "Digest username=\"" + strings.Repeat("a", MaxValueLen) + "\"", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.value)
			if tt.err {
				if err == nil {
					t.Fatalf("Parse accepted %q: %+v", tt.value, got)
				}
				if err != ErrMalformed {
					t.Errorf("error %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// TestRedact: neither the response nor the cnonce survive, in Redact,
// String, %v or slog; an unparsable value is reduced to its length.
func TestRedact(t *testing.T) {
	const secret = "8ca523f5e9506fed4657c9700eebdbec"
	v := `Digest username="Mufasa", realm="r", nonce="n", uri="/", qop=auth, nc=00000001, cnonce="f2wE4q74", response="` + secret + `"`
	c, err := Parse(v)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"Redact": Redact(v),
		"String": c.String(),
		"%v":     sprintf("%v", c),
		"%+v":    sprintf("%+v", c),
		"slog":   c.LogValue().String(),
	} {
		if strings.Contains(s, secret) || strings.Contains(s, "f2wE4q74") {
			t.Errorf("%s leaks: %s", name, s)
		}
		if name != "slog" && !strings.Contains(s, "Mufasa") {
			t.Errorf("%s lost the user name: %s", name, s)
		}
	}
	if got := Redact(`Digest response="` + secret); strings.Contains(got, secret) || !strings.Contains(got, "bytes") {
		t.Errorf("unparsable: %s", got)
	}
}

// format writes every field, unredacted, for the round trip in FuzzParse.
func format(c Credentials) string {
	var b strings.Builder
	b.WriteString(c.Scheme)
	for _, kv := range [][2]string{
		{"username", c.Username}, {"realm", c.Realm}, {"nonce", c.Nonce}, {"uri", c.URI},
		{"response", c.Response}, {"algorithm", c.Algorithm}, {"cnonce", c.Cnonce},
		{"opaque", c.Opaque}, {"qop", c.QOP}, {"nc", c.NC},
	} {
		b.WriteString(" ," + kv[0] + "=" + quoteString(kv[1]))
	}
	if c.Userhash {
		b.WriteString(", userhash=true")
	}
	return b.String()
}

// FuzzParse: Parse never panics, never accepts more than MaxValueLen, and
// what it accepts survives a round trip through quoting.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="natkit", nonce="abc", uri="sip:natkit.test", algorithm=SHA-256, cnonce="0a4f113b", qop=auth, nc=00000001, response="6629fae4"`,
		`Digest username="a\"l,i=ce\\", realm="r, with comma", nonce="n"`,
		"digest   USERNAME = \"bob\" ,, Foo=bar,\t qop=auth ,",
		`Digest username="Mufasa",realm="testrealm@host.com",nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",uri="/dir/index.html",qop=auth,nc=00000001,cnonce="0a4f113b",response="6629fae49393a05397450978507c4ef1",opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
		`Digest username="x`,
		`Digest a=b, a=c`,
		`Basic dXNlcjpwYXNz`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			return
		}
		if len(s) > MaxValueLen {
			t.Fatal("accepted an oversized value")
		}
		again, err := Parse(format(c))
		if err != nil {
			if len(format(c)) > MaxValueLen {
				return
			}
			t.Fatalf("re-parse of %q: %v", format(c), err)
		}
		if again != c {
			t.Fatalf("round trip:\n%#v\n%#v", c, again)
		}
		_ = Redact(s)
	})
}
