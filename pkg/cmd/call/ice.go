package call

import (
	"context"
	"net"
	"strings"

	"github.com/spf13/pflag"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/endpoint"
	engine "github.com/natkit/natkit/pkg/sipua"
)

// TURNPasswordEnv holds the --relay password when the URI has none (as
// natkit punch reads it).
const TURNPasswordEnv = "NATKIT_TURN_PASSWORD"

// iceFlags are the ICE flags' values (ICE in SDP, RFC 8839).
type iceFlags struct {
	ICE   bool
	STUN  string
	Relay string

	stun  *endpoint.Endpoint
	relay *endpoint.Endpoint
	user  string
	pass  string
}

func addICEFlags(fl *pflag.FlagSet, f *iceFlags) {
	fl.BoolVar(&f.ICE, "ice", false, "offer ICE candidates (host, server-reflexive, relayed) so that media goes direct between two ICE ends, or through TURN; with --answer, ICE offers are always answered with ICE")
	fl.StringVar(&f.STUN, "stun", "", "STUN server `HOST[:PORT]` for server-reflexive candidates (default: the SIP server's host, port 3478)")
	fl.StringVar(&f.Relay, "relay", "", "TURN server for relayed candidates (`TURN-URI`, turn:USER[:PASS]@HOST[:PORT]; password default $"+TURNPasswordEnv+")")
}

// validate checks the ICE flags; answer tells answer mode, where ICE
// offers are answered with ICE whether --ice is given or not.
func (f *iceFlags) validate(answer bool, getenv func(string) string) error {
	f.stun, f.relay, f.user, f.pass = nil, nil, "", ""
	if !f.ICE && !answer && (f.STUN != "" || f.Relay != "") {
		return cmdutil.UsageErrorf("--stun and --relay gather ICE candidates: add --ice (or drop them)")
	}
	if f.STUN != "" {
		ep, err := endpoint.Parse(f.STUN, endpoint.STUN)
		if err != nil {
			return cmdutil.UsageErrorf("--stun: %v", err)
		}
		if ep.Scheme != endpoint.STUN || ep.Transport == "tcp" || ep.Transport == "tls" {
			return cmdutil.UsageErrorf("--stun %q: give a STUN server over UDP, HOST[:PORT] or stun:HOST[:PORT]", f.STUN)
		}
		f.stun = &ep
	}
	if f.Relay != "" {
		user, pass, rest := splitUserinfo(f.Relay)
		ep, err := endpoint.Parse(rest, endpoint.TURN)
		if err != nil {
			return cmdutil.UsageErrorf("--relay: %v", err)
		}
		if ep.Scheme != endpoint.TURN || ep.Transport == "tcp" || ep.Transport == "tls" {
			return cmdutil.UsageErrorf("--relay %q: give a turn: URI over UDP, e.g. turn:alice@turn.example.net", redact(f.Relay))
		}
		if pass == "" && getenv != nil {
			pass = getenv(TURNPasswordEnv)
		}
		if user == "" || pass == "" {
			return cmdutil.UsageErrorf("--relay needs credentials: turn:USER@HOST with $%s, or turn:USER:PASS@HOST", TURNPasswordEnv)
		}
		f.relay, f.user, f.pass = &ep, user, pass
	}
	return nil
}

// config resolves the servers into the engine's ICE configuration; sipHost
// is the SIP server's host, the default STUN server. nil when ICE is off.
func (f *iceFlags) config(ctx context.Context, answer bool, sipHost string, fam endpoint.Family) (*engine.ICE, error) {
	if !f.ICE && !answer {
		return nil, nil
	}
	cfg := &engine.ICE{}
	stun := f.stun
	if stun == nil && sipHost != "" {
		stun = &endpoint.Endpoint{Scheme: endpoint.STUN, Host: sipHost, Port: endpoint.STUN.DefaultPort()}
	}
	if stun != nil {
		ap, err := endpoint.Resolve(ctx, net.DefaultResolver, *stun, fam)
		switch {
		case err == nil:
			cfg.STUN = ap
		case f.stun != nil:
			return nil, cmdutil.UsageErrorf("--stun %s: %v", f.STUN, err)
		}
	}
	if f.relay != nil {
		ap, err := endpoint.Resolve(ctx, net.DefaultResolver, *f.relay, fam)
		if err != nil {
			return nil, cmdutil.UsageErrorf("--relay %s: %v", f.relay.Host, err)
		}
		cfg.Relay = &engine.TURNServer{Addr: ap, Username: f.user, Password: f.pass}
	}
	return cfg, nil
}

// splitUserinfo takes USER[:PASS]@ out of a TURN URI (as natkit punch).
func splitUserinfo(s string) (user, pass, rest string) {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", "", s
	}
	scheme, info := "", s[:at]
	if i := strings.Index(info, ":"); i >= 0 && (strings.EqualFold(info[:i], "turn") || strings.EqualFold(info[:i], "turns")) {
		scheme, info = info[:i+1], info[i+1:]
	}
	user, pass, _ = strings.Cut(info, ":")
	return user, pass, scheme + s[at+1:]
}

// redact drops the userinfo of a URI for error messages.
func redact(s string) string {
	if _, _, rest := splitUserinfo(s); rest != s {
		return rest
	}
	return s
}

// sipHost is the SIP server's host: the outbound proxy's, else the URI's.
func (o *CallOptions) sipHost(uri engine.Target) string {
	if o.Proxy != "" {
		if t, err := engine.ParseTarget(o.Proxy); err == nil {
			return t.Host
		}
	}
	return uri.Host
}
