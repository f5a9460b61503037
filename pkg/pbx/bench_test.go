package pbx

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkValidate: the cost of the hand-written checks on RFC 4475's
// long INVITE (longreq), parsed.
func BenchmarkValidate(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(tortureDir(b), "valid", "longreq.dat"))
	if err != nil {
		b.Fatal(err)
	}
	m, err := sip.NewParser().ParseSIP(data)
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*sip.Request)
	req.SetSource("192.0.2.1:5060")
	b.ReportAllocs()
	for b.Loop() {
		validate(req)
	}
}

// BenchmarkCall: one whole call through the proxy per iteration — INVITE,
// 407, INVITE with credentials, 100, 180, 200, ACK, BYE, 200 — between two
// in-process sipgo UAs over loopback UDP.
func BenchmarkCall(b *testing.B) {
	s := startServer(b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := newUA(b, s, "alice", nil)
	bob := newUA(b, s, "bob", nil)
	bob.register(ctx, "bob", "builder")
	b.ResetTimer()
	for b.Loop() {
		sess, code := alice.call(ctx, "alice", "wonderland", "bob")
		if code != 200 {
			b.Fatalf("call: %d", code)
		}
		sess.Ack(ctx)
		if err := sess.Bye(ctx); err != nil {
			b.Fatal(err)
		}
		sess.Close()
	}
}

// BenchmarkRegister: one REGISTER with digest per iteration — REGISTER,
// 401, REGISTER with credentials, 200 — from an in-process sipgo UA over
// loopback UDP (the client's work is in the figure too).
func BenchmarkRegister(b *testing.B) {
	s := startServer(b, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := newUA(b, s, "alice", nil)
	b.ReportAllocs()
	for b.Loop() {
		if code := alice.register(ctx, "alice", "wonderland"); code != 200 {
			b.Fatalf("REGISTER: %d", code)
		}
	}
}
