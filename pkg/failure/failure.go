// Package failure names why a server could not be reached — name
// resolution, no route, nothing answering, UDP blocked, a refused
// connection, an untrusted certificate — from the errors the network stack
// returns, so that a command says the cause in one line instead of
// reporting a table of unknowns.
package failure

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pion/transport/v3"
	"github.com/pion/transport/v3/stdnet"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
)

// Reason is a stable code for why a server could not be reached: the
// failure_reason of natkit.probe/v1 and natkit.detect/v1.
type Reason string

// Reasons.
const (
	// NameResolution: the server's name could not be resolved (no such
	// host, no DNS server answering, none reachable).
	NameResolution Reason = "name-resolution"
	// NoRoute: the host has no route to the server's address (no network,
	// or none of that address family).
	NoRoute Reason = "no-route"
	// NoAnswer: nothing came back, over UDP nor TCP.
	NoAnswer Reason = "no-answer"
	// UDPBlocked: the server answers over TCP but nothing comes back over
	// UDP.
	UDPBlocked Reason = "udp-blocked"
	// Refused: the server's host refused the connection (nothing listens
	// on that port).
	Refused Reason = "refused"
	// Certificate: the server's TLS certificate could not be verified.
	Certificate Reason = "tls-certificate"
	// ServerError: the server answered, with an error.
	ServerError Reason = "server-error"
	// Other: any other failure (the error says which).
	Other Reason = "error"
)

// Reasons lists every code, for documentation and tests.
var Reasons = []Reason{NameResolution, NoRoute, NoAnswer, UDPBlocked, Refused, Certificate, ServerError, Other}

// Classify names the reason of a network error: NameResolution, NoRoute,
// Refused, Certificate, NoAnswer for a timeout, Other for the rest; "" for
// nil. Whether UDP is blocked takes a TCP check (Reaches).
func Classify(err error) Reason {
	var (
		re   *endpoint.ResolveError
		dns  *net.DNSError
		cert *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		he   x509.HostnameError
		ci   x509.CertificateInvalidError
		ne   net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re), errors.As(err, &dns):
		return NameResolution
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL):
		return NoRoute
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.As(err, &cert), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return Certificate
	case errors.Is(err, stunclient.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return NoAnswer
	}
	return Other
}

// Cause is err's text, shortened to what the user needs: the system
// call's error ("network is unreachable") rather than the chain of
// operations around it, the certificate's problem rather than the
// handshake's. A *endpoint.ResolveError is kept whole.
func Cause(err error) string {
	var (
		re   *endpoint.ResolveError
		se   *os.SyscallError
		cert *tls.CertificateVerificationError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re):
		return re.Error()
	case errors.As(err, &se):
		return se.Err.Error()
	case errors.As(err, &cert) && cert.Err != nil:
		return cert.Err.Error() // "x509: certificate signed by unknown authority"
	}
	return err.Error()
}

// Explain says, without command-line flags, what failed about server (as
// the user gave it) and what to try (empty when there is nothing to add); a
// command joins them with ": " for its one-line error. detail is the error
// text, added where it tells more than the reason.
func Explain(r Reason, server, detail string) (what, todo string) {
	with := func(s string) string {
		if detail == "" {
			return s
		}
		return s + " (" + detail + ")"
	}
	switch r {
	case NameResolution:
		if detail == "" {
			detail = "cannot resolve " + server
		}
		return detail, "check the DNS settings and the name, or give the server's IP address"
	case NoRoute:
		return with("no route to " + server), "this host has no network path to that address; check the network connection"
	case NoAnswer:
		return "nothing answered from " + server + " over UDP or TCP",
			"the server is down, the address is wrong, or a firewall drops the traffic; check the address or try another server"
	case UDPBlocked:
		return "no answer from " + server + " over UDP, but its host answers over TCP (a connection or a reset)",
			"UDP is blocked on the way; use TURN over TCP or TLS (port 443), or allow outgoing UDP in the firewall"
	case Refused:
		return with(server + " refused"), "nothing listens on that port (is the server running?); check the address and port"
	case Certificate:
		return with("the TLS certificate of " + server + " is not trusted"), "trust the CA that signed it, or skip verification for a test server"
	case ServerError:
		return with(server + " answered with an error"), ""
	}
	return with(server + " failed"), ""
}

// ReachTimeout bounds Check.
const ReachTimeout = 2 * time.Second

// Reachability is what a server's host answered outside STUN, to tell why
// no STUN answer came.
type Reachability struct {
	// UDPRefused: a datagram to the server's port drew an ICMP port
	// unreachable: the host is there and nothing listens on that port.
	UDPRefused bool
	// TCP: the host answered over TCP on the same port, a connection made
	// or refused (a reset comes from the host itself).
	TCP bool
}

// Reason is why no STUN answer came from a server with this
// reachability: Refused, UDPBlocked (it answers over TCP only) or NoAnswer.
func (r Reachability) Reason() Reason {
	switch {
	case r.UDPRefused:
		return Refused
	case r.TCP:
		return UDPBlocked
	}
	return NoAnswer
}

// Check asks addr's host, within ctx and ReachTimeout, whether it refuses
// a STUN Binding request on a connected UDP socket (only a connected socket
// hears ICMP errors) and whether it answers over TCP on the same port. A
// command runs it when no STUN answer came, to say "nothing listens there",
// "UDP is blocked" or "nothing answers". n is the network (stdnet when nil).
func Check(ctx context.Context, n transport.Net, addr netip.AddrPort) Reachability {
	if n == nil {
		var err error
		if n, err = stdnet.NewNet(); err != nil {
			return Reachability{}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, ReachTimeout)
	defer cancel()
	var r Reachability
	var wg sync.WaitGroup
	wg.Go(func() { r.UDPRefused = udpRefused(ctx, n, addr) })
	wg.Go(func() { r.TCP = tcpReaches(ctx, n, addr) })
	wg.Wait()
	return r
}

// refusedProbeInterval spaces the Binding requests of udpRefused (the ICMP
// answer to one may be rate-limited away).
const refusedProbeInterval = 500 * time.Millisecond

func udpRefused(ctx context.Context, n transport.Net, addr netip.AddrPort) bool {
	network := "udp4"
	if addr.Addr().Is6() {
		network = "udp6"
	}
	c, err := n.Dial(network, addr.String())
	if err != nil {
		return errors.Is(err, syscall.ECONNREFUSED)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var tid stun.TransactionID
	_, _ = rand.Read(tid[:])
	req := stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, tid).Bytes()
	buf := make([]byte, 1500)
	for ctx.Err() == nil {
		if _, err := c.Write(req); err != nil {
			return errors.Is(err, syscall.ECONNREFUSED)
		}
		_ = c.SetReadDeadline(time.Now().Add(refusedProbeInterval))
		if ctx.Err() != nil {
			return false
		}
		if _, err := c.Read(buf); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err != nil && errors.Is(err, syscall.ECONNREFUSED)
		}
	}
	return false
}

func tcpReaches(ctx context.Context, n transport.Net, addr netip.AddrPort) bool {
	d := &net.Dialer{}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	network := "tcp4"
	if addr.Addr().Is6() {
		network = "tcp6"
	}
	c, err := n.CreateDialer(d).Dial(network, addr.String())
	if err == nil {
		c.Close()
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// Line joins what and todo into one line.
func Line(what, todo string) string {
	if todo == "" {
		return what
	}
	return what + ": " + todo
}
