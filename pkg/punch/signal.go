package punch

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"

	"github.com/natkit/natkit/pkg/rendezvous"
)

// Signalling between the peers rides on rendezvous SIGNAL messages, which
// the server relays as opaque data. natkit seals each payload with
// AES-256-GCM under a key derived from the punch key, which the server
// cannot compute: it neither reads the ICE credentials nor alters a
// candidate or a relayed address without the peer noticing.

// Signal kinds.
const (
	sigICE   = "ice"   // ICE credentials and candidates (trickled)
	sigRelay = "relay" // the allocating side's relayed address
)

// signal is one message to the other peer.
type signal struct {
	Kind string `json:"k"`
	// ICE: credentials (in the first message), candidates in SDP
	// attribute form without the "candidate:" prefix, and Done once
	// gathering ended.
	Ufrag string   `json:"u,omitempty"`
	Pwd   string   `json:"p,omitempty"`
	Cands []string `json:"c,omitempty"`
	Done  bool     `json:"d,omitempty"`
	// Relay: the relayed transport address, or Failed when the allocation
	// did not work.
	Relayed string `json:"r,omitempty"`
	Failed  string `json:"f,omitempty"`
	// Fresh-port rounds (fresh.go): the round, the public port of our
	// fresh socket (on our public IP), and Open when the peer's router
	// refused our probes for itself.
	Round int    `json:"n,omitempty"`
	Port  uint16 `json:"o,omitempty"`
	Open  bool   `json:"open,omitempty"`
}

// errBadSignal is a signal that fails to open (tampered, or not ours).
var errBadSignal = errors.New("punch: signal failed authentication")

// signalKey derives the sealing key from the punch key.
func signalKey(punchKey []byte) []byte {
	m := hmac.New(sha256.New, punchKey)
	m.Write([]byte("natkit signal v1"))
	return m.Sum(nil)
}

func newAEAD(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // 32-byte key: cannot fail
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

// sealSignal encrypts s: nonce | ciphertext.
func sealSignal(aead cipher.AEAD, s signal) ([]byte, error) {
	pt, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pt)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, pt, nil), nil
}

// openSignal decrypts and decodes a sealed signal.
func openSignal(aead cipher.AEAD, b []byte) (signal, error) {
	if len(b) < aead.NonceSize()+aead.Overhead() {
		return signal{}, errBadSignal
	}
	pt, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], nil)
	if err != nil {
		return signal{}, errBadSignal
	}
	var s signal
	if err := json.Unmarshal(pt, &s); err != nil {
		return signal{}, errBadSignal
	}
	return s, nil
}

// signaller sends sealed signals through the rendezvous client and sorts
// the peer's by kind.
type signaller struct {
	rv   *rendezvous.Client
	aead cipher.AEAD
	log  *slog.Logger

	mu     sync.Mutex
	queues map[string]chan signal

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// sigQueue bounds the signals of one kind waiting to be read.
const sigQueue = 64

// newSignaller starts reading the peer's signals; close stops it.
func newSignaller(rv *rendezvous.Client, punchKey []byte, log *slog.Logger) *signaller {
	s := &signaller{rv: rv, aead: newAEAD(signalKey(punchKey)), log: log, queues: map[string]chan signal{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.read()
	return s
}

func (s *signaller) queue(kind string) chan signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[kind]
	if q == nil {
		q = make(chan signal, sigQueue)
		s.queues[kind] = q
	}
	return q
}

func (s *signaller) read() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case b := <-s.rv.Signals():
			sig, err := openSignal(s.aead, b)
			if err != nil {
				s.log.Debug("punch: dropped a signal", "err", err)
				continue
			}
			select {
			case s.queue(sig.Kind) <- sig:
			default:
				s.log.Debug("punch: signal queue full", "kind", sig.Kind)
			}
		}
	}
}

// send delivers sig to the peer; it returns once the peer acknowledged it.
func (s *signaller) send(ctx context.Context, sig signal) error {
	b, err := sealSignal(s.aead, sig)
	if err != nil {
		return err
	}
	return s.rv.Signal(ctx, b)
}

// recv returns the peer's next signal of kind.
func (s *signaller) recv(ctx context.Context, kind string) (signal, error) {
	select {
	case sig := <-s.queue(kind):
		return sig, nil
	case <-ctx.Done():
		return signal{}, ctx.Err()
	}
}

// close stops reading; it is idempotent.
func (s *signaller) close() {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
	})
}
