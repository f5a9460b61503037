// Package registrar processes REGISTER requests (RFC 3261 §10.3, Path of
// RFC 3327) into a location.Store, on sipgo's message types; it is
// kamailio's registrar module for natkit's PBX. Authentication is the
// caller's (pkg/sip/digest): Register takes the authenticated user.
package registrar

import (
	"context"
	"errors"
	"hash/maphash"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/pbx/location"
)

// Defaults for the zero values of Config.
const (
	// DefaultMinExpires: shorter registrations get 423 with Min-Expires
	// (RFC 3261 §10.3 step 7). 60 s is kamailio's default; RFC 3261 §10.2.8
	// allows any value of an hour or less.
	DefaultMinExpires = 60 * time.Second
	// DefaultMaxExpires: longer ones are shortened (§10.3 step 7).
	DefaultMaxExpires = time.Hour
	// DefaultExpires: when neither the contact nor the request says (§10.2.1.1).
	DefaultExpires = time.Hour
)

// Config configures a Registrar.
type Config struct {
	Store location.Store // required
	// Domains are the AOR domains served; empty means any (the caller
	// checks the Request-URI). An AOR elsewhere gets 404.
	Domains        []string
	MinExpires     time.Duration
	MaxExpires     time.Duration
	DefaultExpires time.Duration
	Now            func() time.Time // nil means time.Now
}

// Registrar processes REGISTER requests. It is safe for concurrent use:
// requests for one AOR are serialised, so each is atomic (§10.3 step 7).
type Registrar struct {
	store         location.Store
	domains       map[string]bool
	min, max, def time.Duration
	now           func() time.Time
	seed          maphash.Seed
	locks         [256]sync.Mutex
}

// New validates cfg and returns a Registrar.
func New(cfg Config) (*Registrar, error) {
	if cfg.Store == nil {
		return nil, errors.New("registrar: no location store")
	}
	r := &Registrar{store: cfg.Store, min: cfg.MinExpires, max: cfg.MaxExpires, def: cfg.DefaultExpires, now: cfg.Now, seed: maphash.MakeSeed()}
	if r.min == 0 {
		r.min = DefaultMinExpires
	}
	if r.max == 0 {
		r.max = DefaultMaxExpires
	}
	if r.def == 0 {
		r.def = DefaultExpires
	}
	if r.min < 0 || r.max < r.min || r.def < r.min || r.def > r.max || r.min%time.Second != 0 {
		return nil, errors.New("registrar: need 0 < MinExpires ≤ DefaultExpires ≤ MaxExpires, whole seconds")
	}
	if r.now == nil {
		r.now = time.Now
	}
	if len(cfg.Domains) > 0 {
		r.domains = map[string]bool{}
		for _, d := range cfg.Domains {
			r.domains[strings.ToLower(d)] = true
		}
	}
	return r, nil
}

// AOR returns the canonical address of record of a To URI: scheme, user
// and lower-cased host, without port or parameters (RFC 3261 §10.3 step 5).
func AOR(u sip.Uri) string {
	scheme := strings.ToLower(u.Scheme)
	if scheme == "" {
		scheme = "sip"
	}
	return scheme + ":" + u.User + "@" + strings.ToLower(u.Host)
}

// Register processes req, sent by the already authenticated user, and
// returns the response to send. err is set, beside a 500, only when the
// store failed.
func (r *Registrar) Register(ctx context.Context, req *sip.Request, user string) (*sip.Response, error) {
	if req.Method != sip.REGISTER {
		return reply(req, sip.StatusMethodNotAllowed, "Method Not Allowed"), nil
	}
	to, callID, cseq := req.To(), req.CallID(), req.CSeq()
	if to == nil || callID == nil || cseq == nil || cseq.MethodName != sip.REGISTER {
		return reply(req, sip.StatusBadRequest, "Missing To, Call-ID or CSeq"), nil
	}
	if r.domains != nil && !r.domains[strings.ToLower(to.Address.Host)] {
		return reply(req, sip.StatusNotFound, "Not Found"), nil
	}
	// §10.3 step 3 and 4: the authenticated user may only register its own AOR.
	if to.Address.User == "" || to.Address.User != user {
		return reply(req, sip.StatusForbidden, "Forbidden"), nil
	}
	aor := AOR(to.Address)

	now := r.now()
	contacts := req.GetHeaders("Contact")
	defExp, ok := r.headerExpires(req)
	if !ok {
		return reply(req, sip.StatusBadRequest, "Bad Expires"), nil
	}

	var changes []change
	star := false
	for _, h := range contacts {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return reply(req, sip.StatusBadRequest, "Bad Contact"), nil
		}
		if c.Address.Wildcard {
			star = true
			continue
		}
		ch, status := r.parseContact(c, defExp)
		if status != 0 {
			res := reply(req, status, reasons[status])
			if status == sip.StatusIntervalToBrief {
				res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(r.min/time.Second))))
			}
			return res, nil
		}
		changes = append(changes, ch)
	}
	if star && (len(contacts) != 1 || defExp != 0 || req.GetHeader("Expires") == nil) {
		// §10.3 step 6: "*" only alone, with Expires: 0.
		return reply(req, sip.StatusBadRequest, "Wildcard Contact Needs Expires: 0 Alone"), nil
	}

	path := pathValues(req)
	src, _ := netip.ParseAddrPort(req.Source())
	transport := strings.ToUpper(req.Transport())
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
	}

	mu := &r.locks[maphash.String(r.seed, aor)%uint64(len(r.locks))]
	mu.Lock()
	defer mu.Unlock()
	current, err := r.store.Get(ctx, aor)
	if err != nil {
		return reply(req, sip.StatusInternalServerError, "Server Internal Error"), err
	}
	current = live(current, now)
	next := current
	if star || len(changes) > 0 {
		next, ok = apply(current, changes, star, callID.Value(), cseq.SeqNo, func(ch change) location.Binding {
			return location.Binding{
				Contact: ch.uri, Received: src, Transport: transport, Path: path, Q: ch.q,
				Expires: now.Add(ch.expires), CallID: callID.Value(), CSeq: cseq.SeqNo,
				Instance: ch.instance, RegID: ch.regID, UserAgent: ua,
			}
		})
		if !ok {
			// §10.3 step 7: an older or repeated CSeq of the same Call-ID
			// aborts the whole update.
			return reply(req, sip.StatusInternalServerError, "Out Of Order CSeq"), nil
		}
		if err := r.store.Put(ctx, aor, next); err != nil {
			if errors.Is(err, location.ErrTooManyContacts) {
				return reply(req, sip.StatusServiceUnavailable, "Too Many Registered Contacts"), nil
			}
			return reply(req, sip.StatusInternalServerError, "Server Internal Error"), err
		}
	}
	return r.ok(req, next, now, path), nil
}

// Retransmission answers a REGISTER that was already applied: a binding of
// its AOR was last refreshed by this Call-ID and CSeq, from this source.
// It returns the 200 with the AOR's bindings as they are now, as the
// server transaction would have resent its 200 — for a server that does
// not keep REGISTER transactions (RFC 3261 17.2.2's Timer J, 32 s over
// UDP, held a burst of registrations in memory), so that a retransmission
// crossing the 200 is not challenged or refused as a repeated CSeq.
// Anything else is not one (false).
func (r *Registrar) Retransmission(ctx context.Context, req *sip.Request) (*sip.Response, bool) {
	to, callID, cseq := req.To(), req.CallID(), req.CSeq()
	if req.Method != sip.REGISTER || to == nil || callID == nil || cseq == nil || len(req.GetHeaders("Contact")) == 0 {
		return nil, false
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return nil, false
	}
	aor := AOR(to.Address)
	current, err := r.store.Get(ctx, aor)
	if err != nil {
		return nil, false
	}
	now := r.now()
	current = live(current, now)
	for _, b := range current {
		if b.CallID == callID.Value() && b.CSeq == cseq.SeqNo && b.Received == src {
			return r.ok(req, current, now, pathValues(req)), true
		}
	}
	return nil, false
}

// change is one Contact of the request.
type change struct {
	uri, key, instance string
	regID, q           int
	expires            time.Duration
}

var reasons = map[int]string{
	sip.StatusBadRequest:      "Bad Contact",
	sip.StatusIntervalToBrief: "Interval Too Brief",
}

// headerExpires returns the request's Expires header in force for contacts
// without their own, or the default.
func (r *Registrar) headerExpires(req *sip.Request) (time.Duration, bool) {
	h := req.GetHeader("Expires")
	if h == nil {
		return r.def, true
	}
	s, err := seconds(h.Value())
	if err != nil {
		return 0, false
	}
	return s, true
}

// seconds parses delta-seconds (RFC 3261 §25.1); values past 2^32-1 are
// 2^32-1 (§20.19 says so of larger values).
func seconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 20 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > 1<<32-1 {
		n = 1<<32 - 1
	}
	return time.Duration(n) * time.Second, nil
}

// parseContact reads one Contact: its expiry (clamped, or 423), q and
// RFC 5626 instance.
func (r *Registrar) parseContact(c *sip.ContactHeader, def time.Duration) (change, int) {
	ch := change{uri: c.Address.String(), q: 1000, expires: def}
	if v, ok := c.Params.Get("expires"); ok {
		s, err := seconds(v)
		if err != nil {
			return ch, sip.StatusBadRequest
		}
		ch.expires = s
	}
	if ch.expires != 0 {
		if ch.expires < r.min {
			return ch, sip.StatusIntervalToBrief
		}
		ch.expires = min(ch.expires, r.max)
	}
	if v, ok := c.Params.Get("q"); ok {
		q, ok := parseQ(v)
		if !ok {
			return ch, sip.StatusBadRequest
		}
		ch.q = q
	}
	ch.key = ch.uri
	if inst, ok := c.Params.Get("+sip.instance"); ok && inst != "" {
		ch.instance = inst
		if rid, ok := c.Params.Get("reg-id"); ok {
			n, err := strconv.Atoi(rid)
			if err != nil || n < 1 {
				return ch, sip.StatusBadRequest
			}
			ch.regID = n
			ch.key = "instance " + inst + " " + rid // RFC 5626 §6: the flow replaces
		}
	}
	return ch, 0
}

// parseQ reads a qvalue (RFC 3261 §25.1: "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ])
// into thousandths.
func parseQ(s string) (int, bool) {
	if s == "" || len(s) > 5 || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	q := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return q, true
	}
	if s[1] != '.' {
		return 0, false
	}
	scale := 100
	for _, d := range s[2:] {
		if d < '0' || d > '9' {
			return 0, false
		}
		q += int(d-'0') * scale
		scale /= 10
	}
	return q, q <= 1000
}

// key is how a stored binding is matched by a change.
func key(b location.Binding) string {
	if b.Instance != "" && b.RegID != 0 {
		return "instance " + b.Instance + " " + strconv.Itoa(b.RegID)
	}
	return b.Contact
}

// apply computes the new binding set (§10.3 steps 6–7); ok is false when
// an existing binding of the same Call-ID has a CSeq not lower than the
// request's.
func apply(current []location.Binding, changes []change, star bool, callID string, cseq uint32, mk func(change) location.Binding) ([]location.Binding, bool) {
	older := func(b location.Binding) bool { return b.CallID == callID && b.CSeq >= cseq }
	if star {
		for _, b := range current {
			if older(b) {
				return nil, false
			}
		}
		return nil, true
	}
	for _, ch := range changes {
		if i := indexOf(current, ch.key); i >= 0 && older(current[i]) {
			return nil, false
		}
	}
	next := append([]location.Binding(nil), current...)
	for _, ch := range changes {
		i := indexOf(next, ch.key)
		switch {
		case ch.expires == 0 && i >= 0:
			next = append(next[:i], next[i+1:]...)
		case ch.expires == 0:
		case i >= 0:
			next[i] = mk(ch)
		default:
			next = append(next, mk(ch))
		}
	}
	return next, true
}

func indexOf(bs []location.Binding, k string) int {
	for i, b := range bs {
		if key(b) == k {
			return i
		}
	}
	return -1
}

func live(bs []location.Binding, now time.Time) []location.Binding {
	var out []location.Binding
	for _, b := range bs {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	return out
}

// pathValues returns the Path header values in order (RFC 3327 §5.3),
// split at commas outside quotes and angle brackets.
func pathValues(req *sip.Request) []string {
	var out []string
	for _, h := range req.GetHeaders("Path") {
		out = append(out, splitList(h.Value())...)
	}
	return out
}

// splitList splits a header value list at commas outside quotes and angle
// brackets, trimming blanks and dropping empty elements.
func splitList(v string) []string {
	var out []string
	start, inQuote, inAngle := 0, false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '<':
			inAngle = true
		case !inQuote && c == '>':
			inAngle = false
		case !inQuote && !inAngle && c == ',':
			if s := strings.TrimSpace(v[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if start < len(v) {
		if s := strings.TrimSpace(v[start:]); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ok builds the 200 with every current binding and its remaining time
// (§10.3 step 8), and the Path when the UA supports it (RFC 3327 §5.3).
func (r *Registrar) ok(req *sip.Request, bs []location.Binding, now time.Time, path []string) *sip.Response {
	res := reply(req, sip.StatusOK, "OK")
	for _, b := range bs {
		c := &sip.ContactHeader{}
		if err := sip.ParseUri(b.Contact, &c.Address); err != nil {
			continue
		}
		left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		c.Params = sip.NewParams()
		c.Params.Add("expires", strconv.Itoa(max(left, 1)))
		if b.Q != 1000 {
			c.Params.Add("q", formatQ(b.Q))
		}
		if b.Instance != "" {
			c.Params.Add("+sip.instance", b.Instance)
			if b.RegID != 0 {
				c.Params.Add("reg-id", strconv.Itoa(b.RegID))
			}
		}
		res.AppendHeader(c)
	}
	if len(path) > 0 && supports(req, "path") {
		for _, p := range path {
			res.AppendHeader(sip.NewHeader("Path", p))
		}
	}
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")))
	return res
}

func formatQ(q int) string {
	s := strconv.FormatFloat(float64(q)/1000, 'f', 3, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func supports(req *sip.Request, tag string) bool {
	for _, h := range req.GetHeaders("Supported") {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}

func reply(req *sip.Request, code int, reason string) *sip.Response {
	return sip.NewResponseFromRequest(req, code, reason, nil)
}
