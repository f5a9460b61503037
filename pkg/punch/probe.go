package punch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// Direct probes between peers:
//
//	"NKP" | kind (1) | strategy (1) | sender index (1) | timestamp (8) | txid (8) | HMAC (16)
//
// The HMAC (SHA-256, truncated) is keyed with rendezvous.Session.PunchKey,
// which only the two peers can compute, so a stray or forged datagram never
// counts as a connection. 'N' keeps probes apart from STUN (RFC 8489 §5).

const (
	probeMagic = "NKP"
	probeSize  = 3 + 1 + 1 + 1 + 8 + 8 + 16
	kindPing   = 1
	kindPong   = 2
)

type probe struct {
	kind     byte
	strategy Strategy
	from     int
	ts       int64 // sender's clock in ns (echoed in a pong)
	txid     uint64
}

func isProbe(b []byte) bool { return len(b) == probeSize && string(b[:3]) == probeMagic }

func encodeProbe(key []byte, p probe) []byte {
	b := make([]byte, 0, probeSize)
	b = append(b, probeMagic...)
	b = append(b, p.kind, p.strategy.id(), byte(p.from))
	b = binary.BigEndian.AppendUint64(b, uint64(p.ts))
	b = binary.BigEndian.AppendUint64(b, p.txid)
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return append(b, h.Sum(nil)[:16]...)
}

// decodeProbe checks and decodes a probe; ok is false for anything not
// authenticated by key.
func decodeProbe(key []byte, b []byte) (probe, bool) {
	if !isProbe(b) {
		return probe{}, false
	}
	h := hmac.New(sha256.New, key)
	h.Write(b[:probeSize-16])
	if !hmac.Equal(h.Sum(nil)[:16], b[probeSize-16:]) {
		return probe{}, false
	}
	p := probe{kind: b[3], strategy: strategyOf(b[4]), from: int(b[5]),
		ts: int64(binary.BigEndian.Uint64(b[6:14])), txid: binary.BigEndian.Uint64(b[14:22])}
	if (p.kind != kindPing && p.kind != kindPong) || p.from > 1 {
		return probe{}, false
	}
	return p, true
}
