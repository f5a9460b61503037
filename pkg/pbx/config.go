package pbx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/natkit/natkit/pkg/pbx/location"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// Mode is how the server routes calls to registered users.
type Mode string

const (
	// ModeProxy forwards requests statefully, with Record-Route.
	ModeProxy Mode = "proxy"
	// ModeRedirect answers 302 with the registered contacts.
	ModeRedirect Mode = "redirect"
)

// Defaults for zero values of Config.
const (
	// DefaultKeepAlive is the interval of NAT keep-alives: under the 30 s
	// UDP binding timeout many NATs use (RFC 4787 REQ-5 asks for 2 min,
	// few comply); 25 s is what SIP phones commonly send themselves.
	DefaultKeepAlive = 25 * time.Second
	// DefaultRingTimeout is how long a forked INVITE may ring before the
	// branches are cancelled and the caller gets 480 (kamailio's
	// fr_inv_timer is 120 s; RFC 3261 Timer C is more than 3 min).
	DefaultRingTimeout = 120 * time.Second
	// DefaultMaxConnsPerIP is the TCP and TLS connections one source may
	// hold: room for an office of phones behind one NAT, each with its
	// own connection, while one host cannot take every slot.
	DefaultMaxConnsPerIP = 64
	// DefaultMaxConns is the TCP and TLS connections of the whole server
	// (as TURN's): each costs sipgo a reader goroutine and its buffers.
	DefaultMaxConns = 4096
)

// MediaAnchor rewrites the SDP of calls the proxy forwards so that media
// flows through a relay (pkg/pbx/anchor). nil means no anchoring: SDP is
// passed unchanged. tag is the dialog tag of the party whose SDP it is (the
// From tag of a request, the To tag of a response), so that re-INVITEs and
// UPDATEs from either party, and late offers (an offer in a 2xx, answered
// in the ACK), find their leg of the relay.
type MediaAnchor interface {
	// Offer returns the SDP to forward in place of an offer: an INVITE,
	// re-INVITE or UPDATE body, or a 2xx body when the INVITE had none.
	Offer(ctx context.Context, callID, tag string, sdp []byte) ([]byte, error)
	// Answer returns the SDP to forward in place of an answer: a 183 or
	// 2xx body, or an ACK body answering a 2xx's offer.
	Answer(ctx context.Context, callID, tag string, sdp []byte) ([]byte, error)
	Release(callID string)
}

// Group is a call group, as FreeSWITCH's demo groups 2000-2002. By
// default a call rings every registered contact of every member at once,
// the first answer wins and the others are cancelled (ring-all); Hunt rings
// the members one after the other, in order, each for MemberRing (default
// DefaultMemberRing), until one answers.
type Group struct {
	Members    []string
	Hunt       bool
	MemberRing time.Duration
}

// DefaultMemberRing is how long a hunt group rings each member.
const DefaultMemberRing = 15 * time.Second

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Domains are the SIP domains served; requests for others are
	// refused (no open relay). The addresses the server listens on count
	// as its own too. Required.
	Domains []string
	// Listen are the addresses of the UDP and TCP sockets (one of each per
	// address, on the same port); port 0 picks a free one, see Addrs.
	// IPv6 :: means every IPv4 and IPv6 address.
	Listen []netip.AddrPort
	// TLS are the addresses of TLS listeners, with TLSConfig.
	TLS       []netip.AddrPort
	TLSConfig *tls.Config
	// Host is the address put in Via and Record-Route: reachable by every
	// peer. Default: the first listen address if it is specified, else the
	// first domain.
	Host string
	// Realm of digest challenges; default: the first domain.
	Realm string
	// Accounts are the users and their passwords. Required.
	Accounts digest.Store
	// Algorithms offered in challenges (nil: MD5 only, see digest).
	Algorithms []digest.Algorithm
	// DigestKey signs nonces; nil: random per process.
	DigestKey []byte
	// Locations holds registrations. Required.
	Locations location.Store
	// Mode: proxy (default) or redirect.
	Mode Mode
	// Rate is the requests a second accepted from one source address
	// (IPv6: one /64) after a burst of Burst (default: 2×Rate, at least
	// 10); the rest are dropped unread. 0 means no limit.
	Rate  float64
	Burst int
	// KeepAlive is the interval of keep-alives to NATed bindings; negative
	// means none.
	KeepAlive time.Duration
	// RingTimeout bounds ringing of a proxied INVITE.
	RingTimeout time.Duration
	// MaxConnsPerIP caps the TCP and TLS connections one source (an IPv4
	// address, an IPv6 /64) holds at once (0: DefaultMaxConnsPerIP;
	// negative: no cap); MaxConns caps them all (0: DefaultMaxConns;
	// negative: no cap). A connection over a cap is closed at accept.
	MaxConnsPerIP, MaxConns int
	// Static are users served at a fixed address: the built-in services
	// (pkg/pbx/services), by number. A request for one of them goes to its
	// address over UDP in place of a location lookup — no registration is
	// needed, and none is possible for a name that is not an account. The
	// caller is still authenticated as for any call.
	Static map[string]netip.AddrPort
	// Groups are call groups by number (a group number is not an
	// account): see Group.
	Groups map[string]Group
	// Voicemail, when not nil, hands calls to accounts that are not
	// answered to the voicemail service (see Voicemail).
	Voicemail *Voicemail
	// Mailboxes, when not nil, makes the PBX the notifier of message
	// waiting (RFC 3842) for its accounts (mwi.go); the daemon calls
	// Server.MailboxChanged when a box changes.
	Mailboxes Mailboxes
	// Anchor, when not nil, anchors the media of proxied calls.
	Anchor MediaAnchor
	// Logger; nil discards. sipgo's own logs go to it at debug level
	// without message contents.
	Logger *slog.Logger

	// txTimers, when not zero, replaces the inviteTx timers (tests).
	txTimers txTimers
}

// Voicemail is the hand-over of unanswered calls to voicemail. An INVITE
// for an account (not a call group, not a built-in number) in proxy mode
// goes to the voicemail number (a Static user, the built-in 4000) when the
// account has no live binding (instead of 480), when its phones refuse it
// busy (486, 600) or unavailable (480), or time out, or when none answers
// within RingTime. The hand-over is one more branch of the same fork
// (RFC 3261 §16.7 step 4: a proxy may fork on after final responses): the
// same INVITE, with the Request-URI sip:NUMBER@STATIC-ADDR;box=USER;
// vm=REASON (REASON: no-answer, busy, unavailable), the caller's CANCEL
// still cancelling it. Requests the proxy sends to a built-in number carry
// P-Asserted-Identity: the user it authenticated (any the caller sent is
// removed), so that 4000 knows whose box a caller may open.
type Voicemail struct {
	// Number is the voicemail service's Static user; default "4000".
	Number string
	// RingTime is how long a call rings before it goes to voicemail;
	// 0: never on no answer (only busy and unavailable), the call rings
	// for RingTimeout.
	RingTime time.Duration
}

func (c *Config) validate() error {
	if len(c.Domains) == 0 {
		return errors.New("pbx: no domain")
	}
	if len(c.Listen) == 0 && len(c.TLS) == 0 {
		return errors.New("pbx: no listen address")
	}
	if len(c.TLS) > 0 && c.TLSConfig == nil {
		return errors.New("pbx: TLS addresses without a TLS config")
	}
	if c.Accounts == nil {
		return errors.New("pbx: no accounts")
	}
	if c.Locations == nil {
		return errors.New("pbx: no location store")
	}
	for user, a := range c.Static {
		if user == "" || !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() {
			return fmt.Errorf("pbx: static user %q at %v: want a name and a concrete IP:PORT", user, a)
		}
	}
	for number, g := range c.Groups {
		members := g.Members
		if number == "" || len(members) == 0 || g.MemberRing < 0 {
			return fmt.Errorf("pbx: call group %q with %d members, member ring %v: want a number and members", number, len(members), g.MemberRing)
		}
		if _, ok := c.Static[number]; ok {
			return fmt.Errorf("pbx: call group %s is also a built-in service's number", number)
		}
		for _, m := range members {
			if m == "" || m == number {
				return fmt.Errorf("pbx: call group %s: member %q", number, m)
			}
		}
	}
	switch c.Mode {
	case "":
		c.Mode = ModeProxy
	case ModeProxy, ModeRedirect:
	default:
		return fmt.Errorf("pbx: mode %q: want proxy or redirect", c.Mode)
	}
	if c.Rate < 0 || c.Burst < 0 || c.RingTimeout < 0 {
		return errors.New("pbx: negative rate, burst or ring timeout")
	}
	if c.Rate > 0 && c.Burst == 0 {
		c.Burst = max(int(2*c.Rate), 10)
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.RingTimeout == 0 {
		c.RingTimeout = DefaultRingTimeout
	}
	if c.Realm == "" {
		c.Realm = c.Domains[0]
	}
	if v := c.Voicemail; v != nil {
		vv := *v
		if vv.Number == "" {
			vv.Number = "4000"
		}
		if vv.RingTime < 0 {
			return errors.New("pbx: negative voicemail ring time")
		}
		if _, ok := c.Static[vv.Number]; !ok {
			return fmt.Errorf("pbx: voicemail number %s is not a built-in service's", vv.Number)
		}
		c.Voicemail = &vv
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
