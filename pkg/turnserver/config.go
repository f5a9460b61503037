// Package turnserver is natkit's TURN relay (RFC 8656, RFC 5766): pion/turn/v3
// underneath, with what pion leaves open added in front of it — a peer-address
// policy, per-user and total allocation quotas, TURN REST credentials, a
// per-source limit on 401 challenges and the 441/442/437/403 answers pion
// does not give.
//
// natkit's layer sits between the sockets and pion: every datagram pion reads
// has passed through a guard (guard.go) that enforces the policy and answers
// refusals, and that sees pion's answers, so that each request's
// MESSAGE-INTEGRITY is checked once, by pion or by the guard when it answers
// itself (see admitRequest); every relay socket pion writes to
// is a relayConn (relay.go) that checks each destination again and returns
// the allocation's quota when pion closes it.
//
// # Challenges without amplification
//
// A request without valid credentials gets a 401 with REALM and NONCE (RFC
// 8489 §9.2.4), and over UDP its source can be forged. natkit never sends a
// UDP source more bytes than were sent in its name, beyond a budget of 401s
// per source IP (Config.ChallengeRate and ChallengeBurst, limits.go): a 401
// no larger than the request it answers is sent whatever the budget (it
// cannot amplify: DTLS's HelloVerifyRequest and QUIC's padded first
// datagram, RFC 6347 §4.2.1 and RFC 9000 §8.1, rest on the same bound);
// a larger one spends the budget, and without budget nothing is sent. So
// a forged flood of small requests gets at most the budget's 401s, however
// many source ports it uses, while the budget it drains stops no real
// client: natkit's client pads its first request to more than a 401
// (pkg/turnclient), a client that cached REALM and NONCE (RFC 8489
// §9.2.3.2; pion's nonces are good for an hour, from any source) sends
// credentials at once, and a request with valid credentials never spends
// budget. Streams (TCP, TLS) have no budget: their source completed a
// handshake, so it is not forged.
package turnserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/natkit/natkit/pkg/peerpolicy"
	"github.com/natkit/natkit/pkg/ratelimit"
)

// Defaults for the zero values of Config.
const (
	// DefaultPort is the TURN port, shared with STUN (RFC 8656 §4).
	DefaultPort = 3478
	// DefaultTLSPort is TURN over TLS (RFC 8656 §4).
	DefaultTLSPort = 5349
	// DefaultRealm is sent in REALM when Config.Realm is empty.
	DefaultRealm = "natkit"
	// DefaultRelayMin and DefaultRelayMax bound relay ports: the dynamic
	// range RFC 8656 §7.2 recommends (49152-65535).
	DefaultRelayMin = 49152
	DefaultRelayMax = 65535
	// DefaultUserQuota is the most live allocations per user (486 beyond).
	DefaultUserQuota = 100
	// DefaultTotalQuota is the most live allocations in all (508 beyond).
	DefaultTotalQuota = 10000
	// DefaultChallengeRate and DefaultChallengeBurst bound the UDP 401
	// answers larger than their request that one source IP gets (a token
	// bucket per hashed source, see limits.go).
	DefaultChallengeRate  = 20.0
	DefaultChallengeBurst = 40
	// DefaultMaxConns bounds concurrent TCP+TLS client connections.
	DefaultMaxConns = 4096
	// DefaultMaxConnsPerIP bounds the TCP+TLS client connections of one
	// source IP (an IPv6 /64), so that one host cannot take all MaxConns.
	// A TURN client over TCP holds one connection per allocation; a NAT
	// with several clients, or a conferencing host, holds a few dozen.
	DefaultMaxConnsPerIP = 64
	// DefaultIdleTimeout closes a stream connection that has no allocation
	// for this long: a client allocates right after connecting.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultShutdownTimeout bounds Close.
	DefaultShutdownTimeout = 2 * time.Second
	// maxLifetime is pion's cap on allocation lifetimes (RFC 8656 §7.2
	// recommends 3600 s); a connection with an allocation may be silent
	// that long.
	maxLifetime = time.Hour
	// inboundMTU is the largest datagram or stream frame handed to pion.
	inboundMTU = 1600
)

// Secret is a credential. It never prints: fmt, slog and JSON all see
// "[redacted]".
type Secret string

func (Secret) String() string               { return "[redacted]" }
func (Secret) GoString() string             { return "[redacted]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }
func (s Secret) reveal() string             { return string(s) }
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[redacted]")) }

var _ interface{ LogValue() slog.Value } = Secret("")

// User is a long-term credential (RFC 8489 §9.2).
type User struct {
	Name     string
	Password Secret
}

// PortRange is an inclusive range of relay ports.
type PortRange struct{ Min, Max uint16 }

// Config configures a Server. Zero values mean the documented defaults.
//
// Sockets: by default the server binds UDP and TCP on Addr and, with TLS
// set, TLS on TLSAddr. Alternatively the caller hands it ready sockets in
// PacketConns, Listeners and TLSListeners — `natkit serve` does this to
// share port 3478 with its STUN server: it demultiplexes each datagram and
// gives TURN everything that is not a Binding request. When any of the three
// is non-empty the server binds no client-facing socket itself (Addr, NoUDP,
// NoTCP and TLSAddr are ignored), takes ownership of what it was given and
// closes it in Close. A handed PacketConn's ReadFrom must return
// *net.UDPAddr sources (others are converted); a handed Listener must
// return net.Conns whose RemoteAddr is a *net.TCPAddr.
type Config struct {
	// Addr is the UDP and TCP address: zero means 0.0.0.0:3478; port 0
	// picks a free port (tests).
	Addr netip.AddrPort
	// NoUDP and NoTCP turn a transport off.
	NoUDP, NoTCP bool
	// TLS, when set, adds TURN over TLS on TLSAddr (zero: Addr's IP, 5349).
	TLS     *tls.Config
	TLSAddr netip.AddrPort

	// PacketConns, Listeners and TLSListeners replace the sockets above
	// (see the type's comment). TLSListeners are plain TCP listeners the
	// server wraps in TLS with the TLS config.
	PacketConns  []net.PacketConn
	Listeners    []net.Listener
	TLSListeners []net.Listener

	// Realm is the long-term credential realm: "" means DefaultRealm.
	Realm string
	// Users are long-term credentials; UsersFile adds more, one
	// NAME:PASSWORD per line (see ParseUsers). AuthSecret enables TURN REST
	// ephemeral credentials (username "EXPIRY:USER", password
	// base64(HMAC-SHA1(secret, username)); see rest.go). At least one of
	// the three is required.
	Users      []User
	UsersFile  string
	AuthSecret Secret

	// Allow opens peer prefixes the policy denies by default (e.g.
	// 127.0.0.0/8 for tests on one host); Deny closes more.
	Allow, Deny []netip.Prefix
	// PublicIP is the relayed address advertised in XOR-RELAYED-ADDRESS
	// (behind 1:1 NAT). Zero: RelayIP, else Addr's IP, else the first
	// non-loopback IPv4 address of the host.
	PublicIP netip.Addr
	// RelayIP is where relay sockets bind: zero means Addr's IP.
	RelayIP netip.Addr
	// RelayPorts bounds relay ports: zero means 49152-65535.
	RelayPorts PortRange

	// UserQuota is the most live allocations per user (the USER part of a
	// REST username): 0 means DefaultUserQuota, -1 unlimited.
	UserQuota int
	// TotalQuota is the most live allocations: 0 means DefaultTotalQuota.
	TotalQuota int
	// ChallengeRate (per second) and ChallengeBurst bound the UDP 401
	// answers larger than their request (see the package comment) per
	// source IP: 0 means the defaults, a negative rate no limit.
	ChallengeRate  float64
	ChallengeBurst int
	// AnswerLimiter, when set, is the process's budget of answers to
	// unproven UDP sources (natkit serve shares one with STUN and the
	// rendezvous server): a 401 that spends ChallengeRate's budget also
	// draws from it. nil: TURN's own budget alone.
	AnswerLimiter *ratelimit.Limiter

	// UDPSockets is the number of SO_REUSEPORT sockets on the UDP address
	// (pion runs one read loop per socket): 0 means GOMAXPROCS.
	UDPSockets int
	// MaxConns bounds TCP+TLS connections: 0 means DefaultMaxConns.
	MaxConns int
	// MaxConnsPerIP bounds the TCP+TLS connections from one source IP,
	// IPv6 sources by /64 (pkg/connlimit): 0 means DefaultMaxConnsPerIP,
	// negative no per-source cap. Further connections from that source are
	// closed at once and counted in Stats.ConnsRefusedPerIP.
	MaxConnsPerIP int
	// IdleTimeout closes stream connections without an allocation: 0
	// means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds Close: 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// Logger gets lifecycle events, never per-packet ones: nil discards.
	Logger *slog.Logger
	// Now is the clock for REST credential expiry and rate limits.
	Now func() time.Time
}

// LogValue lists the configuration without its secrets.
func (c Config) LogValue() slog.Value {
	names := make([]string, len(c.Users))
	for i, u := range c.Users {
		names[i] = u.Name
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr.String()),
		slog.String("realm", c.Realm),
		slog.Any("users", names),
		slog.String("users_file", c.UsersFile),
		slog.Bool("rest", c.AuthSecret != ""),
		slog.Any("allow", c.Allow),
		slog.String("public_ip", c.PublicIP.String()),
		slog.String("relay_ports", fmt.Sprintf("%d-%d", c.RelayPorts.Min, c.RelayPorts.Max)),
		slog.Int("user_quota", c.UserQuota),
		slog.Int("total_quota", c.TotalQuota),
	)
}

// ErrConfig marks every configuration error from New.
var ErrConfig = errors.New("turnserver: bad configuration")

// ErrNoRelayAddress: the host has no IPv4 address to advertise for relays
// (only loopback ones) and Config.PublicIP gives none.
var ErrNoRelayAddress = errors.New("no IPv4 address to advertise for relays: give a public IP")

func configErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
}

func (c Config) handed() bool {
	return len(c.PacketConns)+len(c.Listeners)+len(c.TLSListeners) > 0
}

func (c Config) withDefaults() (Config, error) {
	if !c.Addr.IsValid() {
		c.Addr = netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort)
	}
	c.Addr = netip.AddrPortFrom(c.Addr.Addr().Unmap(), c.Addr.Port())
	if c.Addr.Addr().Zone() != "" {
		return c, configErrorf("address %s has a zone", c.Addr)
	}
	if c.TLS != nil {
		if len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
			return c, configErrorf("TLS configuration has no certificate")
		}
		if !c.TLSAddr.IsValid() {
			c.TLSAddr = netip.AddrPortFrom(c.Addr.Addr(), DefaultTLSPort)
		}
	}
	if len(c.TLSListeners) > 0 && c.TLS == nil {
		return c, configErrorf("TLS listeners given without a TLS configuration")
	}
	if !c.handed() && c.NoUDP && c.NoTCP && c.TLS == nil {
		return c, configErrorf("every transport is off")
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	if len(c.Realm) > 763 {
		return c, configErrorf("realm is longer than 763 bytes (RFC 8489 §14.9)")
	}
	if len(c.Users) == 0 && c.UsersFile == "" && c.AuthSecret == "" {
		return c, configErrorf("no credentials: give users, a users file or a REST shared secret")
	}
	for _, u := range c.Users {
		if err := checkUser(u); err != nil {
			return c, configErrorf("%v", err)
		}
	}
	if c.RelayPorts == (PortRange{}) {
		c.RelayPorts = PortRange{DefaultRelayMin, DefaultRelayMax}
	}
	if c.RelayPorts.Min == 0 || c.RelayPorts.Min > c.RelayPorts.Max {
		return c, configErrorf("relay ports %d-%d: give MIN-MAX with 1 <= MIN <= MAX", c.RelayPorts.Min, c.RelayPorts.Max)
	}
	for _, ip := range []netip.Addr{c.PublicIP, c.RelayIP} {
		if ip.IsValid() && (!ip.Unmap().Is4() || ip.IsUnspecified()) {
			return c, configErrorf("relay address %s: give an IPv4 address (relays are IPv4)", ip)
		}
	}
	c.PublicIP, c.RelayIP = c.PublicIP.Unmap(), c.RelayIP.Unmap()
	if c.UserQuota < -1 || c.TotalQuota < 0 || c.ChallengeBurst < 0 || c.UDPSockets < 0 || c.MaxConns < 0 ||
		c.IdleTimeout < 0 || c.ShutdownTimeout < 0 {
		return c, configErrorf("negative limit")
	}
	if c.UserQuota == 0 {
		c.UserQuota = DefaultUserQuota
	}
	if c.TotalQuota == 0 {
		c.TotalQuota = DefaultTotalQuota
	}
	if c.ChallengeRate == 0 {
		c.ChallengeRate = DefaultChallengeRate
	}
	if c.ChallengeBurst == 0 {
		c.ChallengeBurst = DefaultChallengeBurst
	}
	if c.UDPSockets == 0 {
		c.UDPSockets = runtime.GOMAXPROCS(0)
	}
	if c.UDPSockets > 256 {
		return c, configErrorf("%d UDP sockets is too many (at most 256)", c.UDPSockets)
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	switch {
	case c.MaxConnsPerIP == 0:
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	case c.MaxConnsPerIP < 0:
		c.MaxConnsPerIP = 0 // no cap: connlimit admits everything
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// relayAddrs picks where relay sockets bind and which address is advertised.
func (c Config) relayAddrs() (bind, advertised netip.Addr, err error) {
	bind = c.RelayIP
	if !bind.IsValid() {
		bind = c.Addr.Addr()
		if !bind.Is4() {
			bind = netip.IPv4Unspecified()
		}
	}
	advertised = c.PublicIP
	if !advertised.IsValid() && !bind.IsUnspecified() {
		advertised = bind
	}
	if !advertised.IsValid() {
		advertised = firstIPv4()
	}
	if !advertised.IsValid() {
		return bind, advertised, fmt.Errorf("%w: %w", ErrConfig, ErrNoRelayAddress)
	}
	return bind, advertised, nil
}

// firstIPv4 is the host's first non-loopback IPv4 address.
func firstIPv4() netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(pn.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.Unmap()
			}
		}
	}
	return netip.Addr{}
}

// ownAddrs lists the host's addresses when the server listens on all of them.
func ownAddrs(listen ...netip.Addr) []netip.Addr {
	var out []netip.Addr
	all := false
	for _, a := range listen {
		if !a.IsValid() {
			continue
		}
		if a.IsUnspecified() {
			all = true
			continue
		}
		out = append(out, a.Unmap())
	}
	if all {
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP); ok {
					out = append(out, ip.Unmap())
				}
			}
		}
	}
	return out
}

func (c Config) policy(bind, advertised netip.Addr, listenPorts []uint16) (*peerpolicy.Policy, error) {
	pc := peerpolicy.Config{
		Allow:    c.Allow,
		Deny:     c.Deny,
		OwnAddrs: ownAddrs(c.Addr.Addr(), c.TLSAddr.Addr(), bind, advertised, c.PublicIP),
		OwnPorts: []peerpolicy.PortRange{{Min: c.RelayPorts.Min, Max: c.RelayPorts.Max}},
	}
	for _, p := range listenPorts {
		if p != 0 {
			pc.OwnPorts = append(pc.OwnPorts, peerpolicy.PortRange{Min: p, Max: p})
		}
	}
	p, err := peerpolicy.New(pc)
	if err != nil {
		return nil, configErrorf("%v", err)
	}
	return p, nil
}
