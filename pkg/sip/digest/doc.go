// Package digest is the server side of HTTP digest authentication for SIP
// (RFC 3261 §22, RFC 7616, RFC 8760): challenges, stateless nonces, and the
// verification of Authorization and Proxy-Authorization values, MD5 and
// SHA-256 with qop=auth.
//
// It is written here rather than taken from sipgo because sipgo (through
// github.com/icholy/digest) only builds a client's answer to a challenge:
// it has no nonce issuing or checking, no nonce-count replay table, no
// protection against guessing extensions or passwords. Those are the parts a
// registrar exposed on the internet needs, and they are all here:
//
//   - nonces are stateless: a timestamp and a random part under an HMAC
//     (optionally over the source address too), valid for NonceLifetime; an
//     expired nonce with a correct response gets stale=true so that the
//     client retries without asking its user;
//   - a (nonce, nc) pair is accepted once, in a bounded table;
//   - an unknown user costs the same work and gets the same answer as a
//     wrong password (a dummy HA1 is computed), so extensions cannot be
//     enumerated;
//   - failed attempts are counted per source address (an IPv4 address, an
//     IPv6 /64) with pkg/ratelimit, never per account, so that nobody can
//     lock a user out; a source over its budget is refused without any hash
//     being computed, for a penalty time kept in a bounded table;
//   - credentials never reach errors or logs: Credentials prints itself
//     with the response redacted and Redact does the same for a raw header
//     value.
package digest
