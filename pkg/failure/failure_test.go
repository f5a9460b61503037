package failure_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/transport/v3/stdnet"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/failure/failuretest"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/stunclient"
)

func opErr(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "udp4", Err: os.NewSyscallError(op, errno)}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		want  failure.Reason
		cause string
	}{
		{"nil", nil, "", ""},
		{"resolve", &endpoint.ResolveError{Host: "h", NotFound: true}, failure.NameResolution, "cannot resolve h: no such host"},
		{"dns", &net.DNSError{Err: "server misbehaving", Name: "h"}, failure.NameResolution, "lookup h: server misbehaving"},
		{"no route", opErr("sendto", syscall.ENETUNREACH), failure.NoRoute, "network is unreachable"},
		{"host unreachable", fmt.Errorf("dial: %w", opErr("connect", syscall.EHOSTUNREACH)), failure.NoRoute, "no route to host"},
		{"refused", opErr("connect", syscall.ECONNREFUSED), failure.Refused, "connection refused"},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, failure.Certificate, "x509: certificate signed by unknown authority"},
		{"wrong host", fmt.Errorf("TLS handshake: %w", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}), failure.Certificate, ""},
		{"stun timeout", &stunclient.TimeoutError{Attempts: 4, After: 5 * time.Second}, failure.NoAnswer, "no answer after 4 request(s) in 5s"},
		{"deadline", context.DeadlineExceeded, failure.NoAnswer, "context deadline exceeded"},
		{"other", errors.New("too many open files"), failure.Other, "too many open files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failure.Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
			}
			if got := failure.Cause(tt.err); tt.cause != "" && got != tt.cause {
				t.Errorf("Cause(%v) = %q, want %q", tt.err, got, tt.cause)
			}
		})
	}
}

// TestExplain: every reason says what failed, naming the server, in one
// line.
func TestExplain(t *testing.T) {
	for _, r := range failure.Reasons {
		what, todo := failure.Explain(r, "192.0.2.1:3478", "detail")
		line := failure.Line(what, todo)
		if !strings.Contains(what, "192.0.2.1:3478") && r != failure.NameResolution || strings.Contains(line, "\n") || line == "" {
			t.Errorf("%s: %q", r, line)
		}
	}
}

// TestCheck asks real sockets on loopback: a port nothing listens on is
// refused over UDP; a TCP listener answers; with no route neither.
func TestCheck(t *testing.T) {
	leaktest.Check(t)
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tcp := netip.MustParseAddrPort(l.Addr().String())
	ctx := context.Background()
	if r := failure.Check(ctx, n, closed); !r.UDPRefused || r.Reason() != failure.Refused {
		t.Errorf("closed port: %+v", r)
	}
	if r := failure.Check(ctx, n, tcp); !r.TCP || r.UDPRefused && r.Reason() != failure.Refused {
		t.Errorf("TCP listener: %+v", r)
	}
	if r := failure.Check(ctx, failuretest.NoRoute(n), tcp); r.TCP || r.UDPRefused || r.Reason() != failure.NoAnswer {
		t.Errorf("no route: %+v", r)
	}
}
