package punch

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

var testKey = bytes.Repeat([]byte{0x5a}, 32)

func TestProbe(t *testing.T) {
	good := encodeProbe(testKey, probe{kind: kindPing, strategy: StrategyBirthday, from: 1, ts: 1234, txid: 0xfeedface})
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name string
		key  []byte
		b    []byte
		ok   bool
	}{
		{"valid", testKey, good, true},
		{"other key", bytes.Repeat([]byte{1}, 32), good, false},
		{"magic", testKey, flip(0), false},
		{"kind", testKey, flip(3), false},
		{"timestamp", testKey, flip(10), false},
		{"mac", testKey, flip(probeSize - 1), false},
		{"short", testKey, good[:probeSize-1], false},
		{"long", testKey, append(bytes.Clone(good), 0), false},
		{"bad kind, good mac", testKey, encodeProbe(testKey, probe{kind: 3}), false},
		{"third peer, good mac", testKey, encodeProbe(testKey, probe{kind: kindPong, from: 2}), false},
		{"empty", testKey, nil, false},
	}
	for _, tt := range tests {
		p, ok := decodeProbe(tt.key, tt.b)
		if ok != tt.ok {
			t.Errorf("%s: ok = %v, want %v", tt.name, ok, tt.ok)
		}
		if ok && (p.kind != kindPing || p.strategy != StrategyBirthday || p.from != 1 || p.ts != 1234 || p.txid != 0xfeedface) {
			t.Errorf("%s: decoded %+v", tt.name, p)
		}
	}
}

// FuzzDecodeProbe: no input makes decodeProbe panic or accept a probe it
// could not have made; whatever the fields, what encodeProbe makes decodes
// to the same fields (strategies outside the table read as none).
func FuzzDecodeProbe(f *testing.F) {
	f.Add(encodeProbe(testKey, probe{kind: kindPing, strategy: StrategySimultaneous, from: 0, ts: 1, txid: 2}), byte(kindPong), byte(3), byte(1), int64(-5), uint64(7))
	f.Add([]byte("NKP"), byte(kindPing), byte(0), byte(0), int64(0), uint64(0))
	f.Add(bytes.Repeat([]byte{'N'}, probeSize), byte(9), byte(200), byte(7), int64(1<<62), uint64(1<<63))
	f.Fuzz(func(t *testing.T, b []byte, kind, st, from byte, ts int64, id uint64) {
		if p, ok := decodeProbe(testKey, b); ok {
			if !bytes.Equal(encodeProbe(testKey, p), b) {
				t.Fatalf("accepted %x, which encodes back as %x", b, encodeProbe(testKey, p))
			}
		}
		in := probe{kind: kind, strategy: strategyOf(st), from: int(from), ts: ts, txid: id}
		out, ok := decodeProbe(testKey, encodeProbe(testKey, in))
		valid := (kind == kindPing || kind == kindPong) && from <= 1
		if ok != valid {
			t.Fatalf("probe %+v: decoded ok=%v, want %v", in, ok, valid)
		}
		if ok && out != in {
			t.Fatalf("probe %+v decoded as %+v", in, out)
		}
	})
}

// FuzzOpenSignal: sealed signals open to what was sealed; nothing else
// opens (or panics).
func FuzzOpenSignal(f *testing.F) {
	aead := newAEAD(signalKey(testKey))
	// A fixed nonce, so that every fuzzing process has the same seed.
	pt := []byte(`{"k":"ice","u":"u","p":"p","c":["1 1 udp 1 192.0.2.1 9 typ host"]}`)
	nonce := make([]byte, aead.NonceSize())
	sealed := aead.Seal(nonce, nonce, pt, nil)
	f.Add(sealed, "relay", "203.0.113.10:49152")
	f.Add([]byte{}, "", "")
	f.Fuzz(func(t *testing.T, b []byte, kind, relayed string) {
		if s, err := openSignal(aead, b); err == nil && !bytes.Equal(b, sealed) {
			t.Fatalf("opened a forged signal: %+v", s)
		}
		in := signal{Kind: kind, Relayed: relayed}
		sb, err := sealSignal(aead, in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := openSignal(aead, sb)
		if err != nil {
			t.Fatalf("sealed %+v does not open: %v", in, err)
		}
		// JSON replaces invalid UTF-8; valid text comes back as it went.
		if utf8.ValidString(kind) && utf8.ValidString(relayed) && (out.Kind != kind || out.Relayed != relayed) {
			t.Fatalf("sealed %+v, opened %+v", in, out)
		}
	})
}
