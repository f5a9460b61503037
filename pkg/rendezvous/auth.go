package rendezvous

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
)

// Authentication.
//
// The session name S is the only secret the two users share. From it each
// peer derives an Ed25519 key pair (seed = HMAC-SHA256("natkit rendezvous
// v1 seed", S)); the public key is the session ID, the only thing the server
// stores about the name. A JOIN is signed with the private key and covers a
// server cookie bound to the sender's address, so the server admits only
// holders of S, and a captured JOIN cannot be replayed from elsewhere. The
// server then issues each peer a random token; every later message either
// way carries an HMAC under it, so a third host — even one that knows S —
// can neither speak for a joined peer nor join a full session. Peers
// authenticate their direct probes with a key only they can compute:
// HMAC(seed, pair nonce) (PunchKey), which the server cannot forge.
//
// What this does not hide: messages are not encrypted, so an on-path
// observer sees addresses and tokens. Short session codes can be guessed
// offline from the session ID; sessions are short-lived for that reason and
// NewCode gives 40 bits.

// Session is a session name with the keys derived from it. Its LogValue
// never shows the name.
type Session struct {
	name string
	seed []byte
	priv ed25519.PrivateKey
	ID   []byte // the Ed25519 public key, SessionIDSize bytes
}

// NewSession derives the keys of a session name. Names are compared after
// trimming spaces and folding case, so "Bright-Fox" and "bright-fox " meet.
func NewSession(name string) (*Session, error) {
	n := NormalizeName(name)
	if n == "" {
		return nil, errors.New("rendezvous: empty session name")
	}
	if len(n) > 128 {
		return nil, errors.New("rendezvous: session name longer than 128 bytes")
	}
	mac := hmac.New(sha256.New, []byte("natkit rendezvous v1 seed"))
	mac.Write([]byte(n))
	seed := mac.Sum(nil)
	priv := ed25519.NewKeyFromSeed(seed)
	return &Session{name: n, seed: seed, priv: priv, ID: priv.Public().(ed25519.PublicKey)}, nil
}

// NormalizeName trims and lower-cases a session name.
func NormalizeName(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// Name returns the normalized session name.
func (s *Session) Name() string { return s.name }

// LogValue redacts the name.
func (s *Session) LogValue() slog.Value {
	return slog.StringValue("session-" + hexShort(s.ID))
}

// PunchKey is the key peers use to authenticate direct probes; it mixes
// the secret seed with the pair nonce the server gave both peers.
func (s *Session) PunchKey(pairNonce []byte) []byte {
	mac := hmac.New(sha256.New, s.seed)
	mac.Write([]byte("natkit punch v1"))
	mac.Write(pairNonce)
	return mac.Sum(nil)
}

// SealJoin encodes a JOIN and signs it with the session key.
func (s *Session) SealJoin(m *Message) ([]byte, error) {
	m.Type = TypeJoin
	m.Session = s.ID
	b, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(s.priv, b)
	return appendTag(b, sig), nil
}

// VerifyJoin checks a JOIN's signature against the session ID it names.
func VerifyJoin(raw []byte, m *Message) bool {
	if m.Type != TypeJoin || len(m.Session) != SessionIDSize || len(m.Tag) != SigSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(m.Session), signedPart(raw, m), m.Tag)
}

// Seal encodes m with an HMAC under token (or without a tag when token is
// nil: HELLO, COOKIE, ERROR).
func Seal(m *Message, token []byte) ([]byte, error) {
	b, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	if token == nil {
		return b, nil
	}
	return appendTag(b, mac(token, b)), nil
}

// Open checks m's HMAC under token.
func Open(raw []byte, m *Message, token []byte) bool {
	if len(m.Tag) != MACSize || len(token) != TokenSize {
		return false
	}
	return hmac.Equal(mac(token, signedPart(raw, m)), m.Tag)
}

func mac(key, b []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return h.Sum(nil)[:MACSize]
}

func appendTag(b, tag []byte) []byte {
	b = append(b, fTag)
	b = binary.BigEndian.AppendUint16(b, uint16(len(tag)))
	return append(b, tag...)
}

// cookie binds an address to an epoch under the server's secret, like
// DTLS's HelloVerifyRequest (RFC 6347 §4.2.1): the server keeps no state
// for a HELLO, and a JOIN from a spoofed address carries no valid cookie.
func cookie(secret []byte, epoch uint32, from netip.AddrPort) []byte {
	h := hmac.New(sha256.New, secret)
	var e [4]byte
	binary.BigEndian.PutUint32(e[:], epoch)
	h.Write(e[:])
	h.Write(appendAddr(nil, from))
	return append(e[:], h.Sum(nil)[:16]...)
}

func checkCookie(secret []byte, now uint32, from netip.AddrPort, c []byte) bool {
	if len(c) != 20 {
		return false
	}
	epoch := binary.BigEndian.Uint32(c)
	if epoch != now && epoch+1 != now {
		return false
	}
	return hmac.Equal(cookie(secret, epoch, from), c)
}

// codeAlphabet is Crockford's base32 in lower case: no i, l, o or u.
const codeAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// NewCode returns a random session code such as "7kfq-29mx" (40 bits).
func NewCode() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	out := make([]byte, 0, 9)
	for i, x := range b {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, codeAlphabet[x&31])
	}
	return string(out)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func hexShort(b []byte) string {
	const hx = "0123456789abcdef"
	if len(b) > 4 {
		b = b[:4]
	}
	out := make([]byte, 0, 8)
	for _, x := range b {
		out = append(out, hx[x>>4], hx[x&15])
	}
	return string(out)
}
