package digest

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/ratelimit"
)

// Algorithm is a digest hash algorithm (RFC 7616 §3.2, RFC 8760).
type Algorithm string

// The algorithms offered and accepted; -sess variants are not.
const (
	MD5    Algorithm = "MD5"
	SHA256 Algorithm = "SHA-256"
)

func (a Algorithm) hash() hash.Hash {
	if a == SHA256 {
		return sha256.New()
	}
	return md5.New()
}

// algorithm maps an algorithm parameter to an Algorithm; absent means MD5
// (RFC 7616 §3.3).
func algorithm(s string) (Algorithm, bool) {
	switch {
	case s == "", strings.EqualFold(s, "MD5"):
		return MD5, true
	case strings.EqualFold(s, "SHA-256"):
		return SHA256, true
	}
	return "", false
}

// Store looks up credentials. HA1 returns H(username ":" realm ":" password)
// in lower-case hex for alg, and false for an unknown user. Implementations
// should take the same time for unknown and known users.
type Store interface {
	HA1(user, realm string, alg Algorithm) ([]byte, bool)
}

// Passwords is a Store over clear-text passwords, keyed by user name.
type Passwords map[string]string

// HA1 implements Store.
func (p Passwords) HA1(user, realm string, alg Algorithm) ([]byte, bool) {
	pw, ok := p[user]
	if !ok {
		return nil, false
	}
	return HA1(alg, user, realm, pw), true
}

// HA1 computes H(user ":" realm ":" password) in lower-case hex.
func HA1(alg Algorithm, user, realm, password string) []byte {
	return hexHash(alg, user, ":", realm, ":", password)
}

func hexHash(alg Algorithm, parts ...string) []byte {
	h := alg.hash()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	sum := h.Sum(nil)
	out := make([]byte, hex.EncodedLen(len(sum)))
	hex.Encode(out, sum)
	return out
}

// response computes the qop=auth request-digest (RFC 7616 §3.4.1).
func response(alg Algorithm, ha1 []byte, nonce, nc, cnonce, qop, method, uri string) []byte {
	ha2 := hexHash(alg, method, ":", uri)
	return hexHash(alg, string(ha1), ":", nonce, ":", nc, ":", cnonce, ":", qop, ":", string(ha2))
}

// Defaults for the zero values of Config.
const (
	// DefaultNonceLifetime: how long a nonce is good for. After it, a correct
	// answer gets stale=true (RFC 7616 §3.3).
	DefaultNonceLifetime = 5 * time.Minute
	// DefaultFailureRate and DefaultFailureBurst: failed attempts a source
	// may make — ten at once, then one every ten seconds.
	DefaultFailureRate  = 0.1
	DefaultFailureBurst = 10
	// DefaultPenalty: how long a source over its budget is refused unheard.
	DefaultPenalty = time.Minute
	// DefaultReplayEntries and DefaultPenaltyEntries bound the two tables.
	DefaultReplayEntries  = 1 << 16
	DefaultPenaltyEntries = 1 << 12
)

// DefaultAlgorithms is MD5 alone: Debian's baresip 1.0 fails to register
// when any challenge is SHA-256, and SIPp 3.6 reads only the first one.
var DefaultAlgorithms = []Algorithm{MD5}

// Config configures a Verifier. Zero values mean the defaults above.
type Config struct {
	Realm string // required
	Store Store  // required

	// Key signs nonces; nil means a random key (nonces then die with the
	// process, and clients answer the next request's 401 with one retry).
	Key []byte
	// Algorithms are offered in challenges, most preferred first; nil
	// means MD5 only (DefaultAlgorithms). Responses under either
	// algorithm are checked whatever was offered.
	Algorithms []Algorithm
	// BindSource binds each nonce to the source address (IPv4 address or
	// IPv6 /64) it was issued to.
	BindSource bool

	NonceLifetime  time.Duration
	FailureRate    float64 // failed attempts per second per source
	FailureBurst   int
	Failures       *ratelimit.Limiter // overrides FailureRate/Burst: a shared budget
	Penalty        time.Duration
	ReplayEntries  int
	PenaltyEntries int

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier issues challenges and checks credentials. It is safe for
// concurrent use.
type Verifier struct {
	realm      string
	algs       []Algorithm
	store      Store
	key        []byte
	macs       sync.Pool // of hash.Hash: HMAC-SHA256 keyed with key (nonce.go)
	bindSource bool
	lifetime   int64
	penaltyNs  int64
	failures   *ratelimit.Limiter
	replays    *replays
	penalties  *penalties
	now        func() time.Time
	epoch      time.Time
	dummy      string // password of the user that does not exist
}

// New validates cfg and returns a Verifier.
func New(cfg Config) (*Verifier, error) {
	if cfg.Realm == "" {
		return nil, errors.New("digest: no realm")
	}
	if cfg.Store == nil {
		return nil, errors.New("digest: no credential store")
	}
	if cfg.NonceLifetime < 0 || cfg.FailureRate < 0 || cfg.FailureBurst < 0 || cfg.Penalty < 0 || cfg.ReplayEntries < 0 || cfg.PenaltyEntries < 0 {
		return nil, errors.New("digest: negative limit")
	}
	v := &Verifier{realm: cfg.Realm, store: cfg.Store, key: cfg.Key, bindSource: cfg.BindSource, now: cfg.Now}
	v.algs = DefaultAlgorithms
	if len(cfg.Algorithms) > 0 {
		v.algs = nil
		for _, a := range cfg.Algorithms {
			alg, ok := algorithm(string(a))
			if !ok {
				return nil, fmt.Errorf("digest: unknown algorithm %q (MD5 or SHA-256)", a)
			}
			if !slices.Contains(v.algs, alg) {
				v.algs = append(v.algs, alg)
			}
		}
	}
	if v.key == nil {
		v.key = make([]byte, 32)
		rand.Read(v.key)
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.epoch = v.now()
	v.lifetime = int64(orDefault(cfg.NonceLifetime, DefaultNonceLifetime))
	v.penaltyNs = int64(orDefault(cfg.Penalty, DefaultPenalty))
	v.failures = cfg.Failures
	if v.failures == nil {
		v.failures = ratelimit.New(orDefault(cfg.FailureRate, DefaultFailureRate), orDefault(cfg.FailureBurst, DefaultFailureBurst))
	}
	v.replays = newReplays(orDefault(cfg.ReplayEntries, DefaultReplayEntries))
	v.penalties = newPenalties(orDefault(cfg.PenaltyEntries, DefaultPenaltyEntries))
	var d [16]byte
	rand.Read(d[:])
	v.dummy = hex.EncodeToString(d[:])
	return v, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// clock returns nanoseconds since New on the injected clock; it is also the
// clock of the failure Limiter (which starts at zero no later than our first
// call). Nonces issued by another process with the same key carry times of
// its own clock: share keys only between Verifiers that share an epoch.
func (v *Verifier) clock() int64 { return int64(v.now().Sub(v.epoch)) }

// Header names for a challenge and the credentials that answer it.
const (
	WWWAuthenticate    = "WWW-Authenticate"    // in a 401
	ProxyAuthenticate  = "Proxy-Authenticate"  // in a 407
	Authorization      = "Authorization"       // answers a 401
	ProxyAuthorization = "Proxy-Authorization" // answers a 407
)

// Challenge returns the values of the challenge headers for a 401 or 407 to
// src: one per algorithm offered (Config.Algorithms), most preferred first
// (RFC 8760 §2.4: a client uses the first it supports), with one nonce for all.
// stale marks the answer to a correct response under an expired nonce.
func (v *Verifier) Challenge(src netip.Addr, stale bool) []string {
	nonce := v.newNonce(src, v.clock())
	out := make([]string, 0, len(v.algs))
	for _, alg := range v.algs {
		var b strings.Builder
		b.WriteString(`Digest realm=`)
		b.WriteString(quoteString(v.realm))
		b.WriteString(`, nonce="`)
		b.WriteString(nonce)
		b.WriteString(`", algorithm=`)
		b.WriteString(string(alg))
		b.WriteString(`, qop="auth"`)
		if stale {
			b.WriteString(`, stale=true`)
		}
		out = append(out, b.String())
	}
	return out
}

// Outcome is what to answer.
type Outcome int

const (
	// Accepted: the credentials are good; Result.User is authenticated.
	Accepted Outcome = iota
	// Rejected: answer 401/407 with a fresh Challenge.
	Rejected
	// Stale: answer 401/407 with Challenge(src, true).
	Stale
	// Throttled: the source spent its budget of failures; answer 403 (or
	// nothing) without a challenge. No hash was computed.
	Throttled
	// Malformed: answer 400.
	Malformed
)

var outcomeNames = [...]string{"accepted", "rejected", "stale", "throttled", "malformed"}

func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Reason says why, for counters (never for the peer). An unknown user and a
// wrong password are both ReasonResponse: not even a log line tells them
// apart.
type Reason string

const (
	ReasonNone        Reason = ""
	ReasonMalformed   Reason = "malformed"
	ReasonThrottled   Reason = "throttled"
	ReasonUnsupported Reason = "unsupported" // scheme, algorithm, qop, userhash, realm
	ReasonNonce       Reason = "nonce"       // not one of ours
	ReasonResponse    Reason = "response"    // wrong password or unknown user
	ReasonStale       Reason = "stale"
	ReasonReplay      Reason = "replay"
)

// Result is the outcome of Verify.
type Result struct {
	Outcome   Outcome
	Reason    Reason
	User      string // set when Accepted
	Algorithm Algorithm
}

// Verify checks an Authorization (or Proxy-Authorization) value sent by src
// with a request of method. Only a wrong response counts against the
// source's budget: a missing, foreign or expired nonce is a normal step of
// the protocol.
func (v *Verifier) Verify(method, value string, src netip.Addr) Result {
	now := v.clock()
	if v.penalties.active(src, now) {
		return Result{Outcome: Throttled, Reason: ReasonThrottled}
	}
	c, err := Parse(value)
	if err != nil {
		return Result{Outcome: Malformed, Reason: ReasonMalformed}
	}
	if c.Username == "" || c.Nonce == "" || c.URI == "" || c.Response == "" {
		return Result{Outcome: Malformed, Reason: ReasonMalformed}
	}
	alg, ok := algorithm(c.Algorithm)
	if !ok || !strings.EqualFold(c.Scheme, "Digest") || c.QOP != "auth" || c.Userhash || c.Realm != v.realm || c.Cnonce == "" {
		return Result{Outcome: Rejected, Reason: ReasonUnsupported}
	}
	nc, ok := parseNC(c.NC)
	if !ok {
		return Result{Outcome: Malformed, Reason: ReasonMalformed}
	}
	issued, ok := v.openNonce(c.Nonce, src)
	if !ok || issued > now {
		return Result{Outcome: Rejected, Reason: ReasonNonce}
	}
	ha1, known := v.store.HA1(c.Username, c.Realm, alg)
	if !known {
		// The same work as a known user, and a response that cannot match.
		ha1 = HA1(alg, c.Username, c.Realm, v.dummy)
	}
	want := response(alg, ha1, c.Nonce, c.NC, c.Cnonce, c.QOP, method, c.URI)
	good := subtle.ConstantTimeCompare(want, []byte(strings.ToLower(c.Response))) == 1 && known
	if !good {
		if !v.failures.AllowAt(src, now) {
			v.penalties.add(src, now+v.penaltyNs, now)
		}
		return Result{Outcome: Rejected, Reason: ReasonResponse}
	}
	if now-issued > v.lifetime || v.replays.stale(issued) {
		return Result{Outcome: Stale, Reason: ReasonStale, Algorithm: alg}
	}
	if !v.replays.use(c.Nonce, nc, issued, now-v.lifetime) {
		if v.replays.stale(issued) {
			return Result{Outcome: Stale, Reason: ReasonStale, Algorithm: alg}
		}
		return Result{Outcome: Rejected, Reason: ReasonReplay}
	}
	return Result{Outcome: Accepted, User: c.Username, Algorithm: alg}
}

// parseNC reads a nonce count: one to eight hex digits (RFC 7616 says
// eight; some clients drop leading zeros), not zero.
func parseNC(s string) (uint32, bool) {
	if len(s) == 0 || len(s) > 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint32(n), true
}
