package report

import (
	"fmt"
	"strings"

	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/sipua"
)

// EchoNumber is the echo test the SIP part calls (FreeSWITCH's demo
// dialplan and natkit serve: 9195 echoes 5 s later).
const EchoNumber = "9195"

// TURNTarget is a parsed --turn URI.
type TURNTarget struct {
	Server   endpoint.Endpoint
	User     string
	Password string
}

// SIPTarget is a parsed --sip URI: the account to register and the
// server whose echo test is called.
type SIPTarget struct {
	// Account is the URI without its password (sip:1001@pbx.example.net).
	Account  sipua.Target
	Password string
}

// splitUserinfo takes USER[:PASSWORD]@ out of a URI:
// "turn:alice:pw@host:3478" gives "turn:host:3478", "alice", "pw".
func splitUserinfo(uri string) (rest, user, password string, hasPassword bool) {
	scheme, body, ok := strings.Cut(uri, ":")
	if !ok || strings.Contains(scheme, "@") || strings.Contains(scheme, ".") {
		scheme, body = "", uri
	}
	at := strings.LastIndex(body, "@")
	if at < 0 {
		return uri, "", "", false
	}
	info := body[:at]
	body = body[at+1:]
	user, password, hasPassword = strings.Cut(info, ":")
	if scheme != "" {
		body = scheme + ":" + body
	}
	return body, user, password, hasPassword
}

// ParseTURN parses turn:USER[:PASSWORD]@HOST[:PORT][?transport=udp|tcp]
// (or turns:). Without a password in the URI, password is used (the
// environment's); the error never shows the password.
func ParseTURN(uri, password string) (TURNTarget, error) {
	rest, user, pw, has := splitUserinfo(uri)
	ep, err := endpoint.Parse(rest, endpoint.TURN)
	if err != nil {
		return TURNTarget{}, fmt.Errorf("--turn: %s", strings.ReplaceAll(err.Error(), rest, redactURI(uri)))
	}
	if ep.Scheme != endpoint.TURN && ep.Scheme != endpoint.TURNS {
		return TURNTarget{}, fmt.Errorf("--turn %s: give a turn: or turns: URI, e.g. turn:alice@turn.example.net", redactURI(uri))
	}
	if ep.Transport == "" {
		ep.Transport = "udp"
	}
	if user == "" {
		return TURNTarget{}, fmt.Errorf("--turn %s: no username: give turn:USER@HOST (the password in $NATKIT_TURN_PASSWORD)", redactURI(uri))
	}
	if !has {
		pw = password
	}
	if pw == "" {
		return TURNTarget{}, fmt.Errorf("--turn %s: no password: set $NATKIT_TURN_PASSWORD (or give turn:USER:PASSWORD@HOST)", redactURI(uri))
	}
	return TURNTarget{Server: ep, User: user, Password: pw}, nil
}

// ParseSIP parses sip:USER[:PASSWORD]@HOST[:PORT][;transport=...] (or
// sips:, or USER@HOST): the account registered and the server whose echo
// test (EchoNumber) is called.
func ParseSIP(uri, password string) (SIPTarget, error) {
	rest, user, pw, has := splitUserinfo(uri)
	if user == "" {
		return SIPTarget{}, fmt.Errorf("--sip %s: no account: give sip:USER@HOST (the password in $NATKIT_SIP_PASSWORD)", redactURI(uri))
	}
	scheme, hostpart, ok := strings.Cut(rest, ":")
	if !ok || (scheme != "sip" && scheme != "sips") {
		scheme, hostpart = "sip", rest
	}
	t, err := sipua.ParseTarget(scheme + ":" + user + "@" + hostpart)
	if err != nil {
		return SIPTarget{}, fmt.Errorf("--sip %s: %s", redactURI(uri), strings.TrimPrefix(err.Error(), sipua.ErrTarget.Error()+" "))
	}
	if !has {
		pw = password
	}
	if pw == "" {
		return SIPTarget{}, fmt.Errorf("--sip %s: no password: set $NATKIT_SIP_PASSWORD (or give sip:USER:PASSWORD@HOST)", redactURI(uri))
	}
	return SIPTarget{Account: t, Password: pw}, nil
}

// redactURI is uri with the password of its userinfo replaced.
func redactURI(uri string) string {
	rest, user, _, has := splitUserinfo(uri)
	if !has {
		return uri
	}
	scheme, body, ok := strings.Cut(rest, ":")
	if !ok {
		return user + ":" + Redacted + "@" + rest
	}
	return scheme + ":" + user + ":" + Redacted + "@" + body
}
