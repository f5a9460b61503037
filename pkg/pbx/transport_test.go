package pbx

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
	"github.com/natkit/natkit/pkg/leaktest"
)

// stream is a hand-driven SIP connection over TCP or TLS.
type stream struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	prot string
}

func (s *stream) port() int { return s.c.LocalAddr().(*net.TCPAddr).Port }

func (s *stream) send(method, ruri, extra string, cseq int) {
	s.t.Helper()
	msg := method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + s.prot + " 127.0.0.1:" + strconv.Itoa(s.port()) + ";branch=z9hG4bK" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@" + domain + ">;tag=t1\r\nTo: <sip:alice@" + domain + ">\r\n" +
		"Call-ID: stream-" + s.prot + "\r\nCSeq: " + strconv.Itoa(cseq) + " " + method + "\r\n" + extra + "Content-Length: 0\r\n\r\n"
	s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(s.c, msg); err != nil {
		s.t.Fatal(err)
	}
}

// response reads one response: status and headers (no body: Content-Length 0).
func (s *stream) response() (int, map[string]string) {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h := map[string]string{}
	code := 0
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatal(err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if code == 0 {
				continue // keep-alive CRLF
			}
			return code, h
		}
		if code == 0 {
			code = status([]byte(line + "\r\n"))
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
}

// TestStreams: REGISTER with digest over TCP and OPTIONS over TLS; the
// NATed TCP binding gets CRLF keep-alives on its connection.
func TestStreams(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, func(c *Config) {
		c.TLS = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
		c.TLSConfig = selfSigned(t)
		c.KeepAlive = 20 * time.Millisecond
	})
	t.Run("TCP REGISTER", func(t *testing.T) {
		c, err := net.Dial("tcp", s.Addrs().TCP[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		st := &stream{t: t, c: c, r: bufio.NewReader(c), prot: "TCP"}
		contact := "Contact: <sip:alice@10.255.0.1:5060;transport=tcp>\r\n" // behind a NAT
		st.send("REGISTER", "sip:"+domain, contact, 1)
		code, h := st.response()
		if code != 401 {
			t.Fatalf("got %d, want 401", code)
		}
		chal, err := digest.ParseChallenge(h["www-authenticate"])
		if err != nil {
			t.Fatal(err)
		}
		cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + domain, Username: "alice", Password: "wonderland", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		st.send("REGISTER", "sip:"+domain, contact+"Authorization: "+cred.String()+"\r\n", 2)
		if code, _ := st.response(); code != 200 {
			t.Fatalf("got %d, want 200", code)
		}
		// Keep-alives are CRLF pairs on this connection.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(st.r, buf); err != nil || string(buf) != "\r\n\r\n" {
			t.Fatalf("keep-alive %q, %v", buf, err)
		}
	})
	t.Run("TLS OPTIONS", func(t *testing.T) {
		c, err := tls.Dial("tcp", s.Addrs().TLS[0].String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		st := &stream{t: t, c: c, r: bufio.NewReader(c), prot: "TLS"}
		st.c = c
		st.send("OPTIONS", "sip:"+domain, "", 1)
		if code, _ := st.response(); code != 200 {
			t.Fatalf("got %d, want 200", code)
		}
	})
}

func selfSigned(t *testing.T) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: domain},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{domain}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
