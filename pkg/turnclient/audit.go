package turnclient

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/natkit/natkit/pkg/render"
)

// AuditTarget is one peer address a relay should refuse.
type AuditTarget struct {
	Name string
	Peer netip.AddrPort
}

// DefaultAuditTargets are the peer-policy bypasses of the coturn CVE
// classes (CVE-2020-26262: 0.0.0.0 and [::] reach loopback; later ones:
// IPv4 deny lists bypassed through IPv4-in-IPv6 forms) and the ranges a
// relay must not reach. server is the TURN server's own address (a relay
// must not loop to itself). Nothing is ever sent to these addresses: the
// audit only asks for permissions and channels.
func DefaultAuditTargets(server netip.AddrPort) []AuditTarget {
	ap := func(a string, port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(a), port) }
	t := []AuditTarget{
		{"loopback", ap("127.0.0.1", 9)},
		{"unspecified 0.0.0.0 (CVE-2020-26262)", ap("0.0.0.0", 9)},
		{"unspecified :: (CVE-2020-26262)", ap("::", 9)},
		{"loopback ::1", ap("::1", 9)},
		{"cloud metadata 169.254.169.254", ap("169.254.169.254", 80)},
		{"private 10.0.0.1", ap("10.0.0.1", 9)},
		{"private 172.16.0.1", ap("172.16.0.1", 9)},
		{"private 192.168.0.1", ap("192.168.0.1", 9)},
		{"carrier-grade NAT 100.64.0.1", ap("100.64.0.1", 9)},
		{"unique-local fd00::1", ap("fd00::1", 9)},
		{"link-local fe80::1", ap("fe80::1", 9)},
		{"multicast 224.0.0.1", ap("224.0.0.1", 9)},
		{"broadcast 255.255.255.255", ap("255.255.255.255", 9)},
		{"IPv4-mapped ::ffff:127.0.0.1", ap("::ffff:127.0.0.1", 9)},
		{"IPv4-mapped ::ffff:0.0.0.0", ap("::ffff:0.0.0.0", 9)},
		{"IPv4-mapped ::ffff:169.254.169.254", ap("::ffff:169.254.169.254", 80)},
		{"IPv4-mapped ::ffff:10.0.0.1", ap("::ffff:10.0.0.1", 9)},
		{"IPv4-compatible ::127.0.0.1", ap("::127.0.0.1", 9)},
		{"IPv4-compatible ::169.254.169.254", ap("::169.254.169.254", 80)},
		{"SIIT ::ffff:0:127.0.0.1", ap("::ffff:0:127.0.0.1", 9)},
		{"NAT64 64:ff9b::127.0.0.1", ap("64:ff9b::7f00:1", 9)},
		{"NAT64 64:ff9b::169.254.169.254", ap("64:ff9b::a9fe:a9fe", 80)},
		{"NAT64 local-use 64:ff9b:1::127.0.0.1", ap("64:ff9b:1::7f00:1", 9)},
		{"6to4 2002:7f00:1::", ap("2002:7f00:1::", 9)},
		{"6to4 2002:a9fe:a9fe::", ap("2002:a9fe:a9fe::", 80)},
		{"Teredo to 127.0.0.1", ap("2001:0:4136:e378:8000:63bf:80ff:fffe", 9)},
		{"Teredo to 169.254.169.254", ap("2001:0:4136:e378:8000:63bf:5601:5601", 80)},
	}
	if server.IsValid() {
		t = append(t, AuditTarget{"the server itself " + server.String(), server})
	}
	return t
}

// AuditReport is `natkit turn audit --json` (schema natkit.turn-audit/v1).
type AuditReport struct {
	render.Envelope
	Server         string        `json:"server"`
	ServerAddress  string        `json:"server_address"`
	Transport      string        `json:"transport"`
	RelayedAddress *string       `json:"relayed_address"`
	Checked        int           `json:"checked"`
	Denied         int           `json:"denied"`
	Allowed        int           `json:"allowed"`
	Results        []AuditResult `json:"results"`
	DurationMs     float64       `json:"duration_ms"`
	Error          *string       `json:"error"`
}

// AuditResult is what the server said about one target.
type AuditResult struct {
	Name    string `json:"name"`
	Peer    string `json:"peer"`
	Verdict string `json:"verdict"` // "denied" | "allowed" | "unknown"
	// Permission and Channel are "granted", "denied" or "error" (no answer).
	Permission     string `json:"permission"`
	PermissionCode *int   `json:"permission_error_code"`
	Channel        string `json:"channel"`
	ChannelCode    *int   `json:"channel_error_code"`
}

// Audit allocates once and asks for a permission and a channel to every
// target, reporting which the server grants. It sends no data to them.
func Audit(ctx context.Context, o Config, label string, targets []AuditTarget) (AuditReport, error) {
	start := time.Now()
	rep := AuditReport{Envelope: render.NewEnvelope("turn-audit"), Server: label, ServerAddress: o.Server.String(),
		Transport: o.Transport, Results: []AuditResult{}}
	if rep.Transport == "" {
		rep.Transport = "udp"
	}
	c, err := Dial(ctx, o)
	if err != nil {
		return rep, err
	}
	defer c.Close()
	a, err := c.Allocate(ctx)
	if err != nil {
		rep.Error = strp(err.Error())
		return rep, nil
	}
	rep.RelayedAddress = strp(a.Relayed.String())
	verdict := func(err error) (string, *int) {
		var se *ServerError
		switch {
		case err == nil:
			return "granted", nil
		case errors.As(err, &se):
			return "denied", intp(se.Code)
		}
		return "error", nil
	}
	for _, t := range targets {
		r := AuditResult{Name: t.Name, Peer: t.Peer.String()}
		r.Permission, r.PermissionCode = verdict(c.CreatePermission(ctx, t.Peer.Addr()))
		_, cerr := c.ChannelBind(ctx, 0, t.Peer)
		r.Channel, r.ChannelCode = verdict(cerr)
		switch {
		case r.Permission == "granted" || r.Channel == "granted":
			r.Verdict = "allowed"
			rep.Allowed++
		case r.Permission == "denied" && r.Channel == "denied":
			r.Verdict = "denied"
			rep.Denied++
		default:
			r.Verdict = "unknown"
		}
		rep.Checked++
		rep.Results = append(rep.Results, r)
		if ctx.Err() != nil {
			break
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	_ = c.Release(rctx)
	cancel()
	rep.DurationMs = *ms(time.Since(start))
	return rep, nil
}
