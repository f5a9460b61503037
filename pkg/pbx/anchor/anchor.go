// Package anchor relays a call's RTP and RTCP between its two legs, a media
// anchor in the manner of rtpengine: each leg gets its own port pair from
// the --media-ports range, and each leg sends to where its phone's media
// really comes from (latching, i.e. symmetric RTP, RFC 4961), so that two
// phones behind NATs that rewrite ports, symmetric NATs included, hear each
// other. Media (sdp.go) is the PBX's side of it: one Call per SIP Call-ID,
// with the offer and answer SDP rewritten to the relay.
package anchor

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/sockets"
)

// Defaults for a zero Config.
const (
	// DefaultMinPort and DefaultMaxPort bound the media ports: the range
	// RFC 6335 §6 leaves to dynamic use, where phones and PBXes put RTP.
	DefaultMinPort = 16384
	DefaultMaxPort = 32767
	// DefaultTimeout closes a call whose legs have sent no media for this
	// long (rtpengine's default): long enough for a phone on hold that
	// sends nothing, short enough to reclaim ports when a BYE is lost.
	DefaultTimeout = 60 * time.Second
	// RelatchAfter is how long a latched source must be silent before a
	// packet from another source may take its place (a phone that roamed,
	// a NAT that rebound the mapping). Until then other sources are
	// dropped, so that no one takes over a live stream.
	RelatchAfter = 5 * time.Second
)

// bufSize bounds a relayed packet; a datagram that fills the buffer may
// have been cut short and is dropped. G.711 and G.722 stay under the MTU,
// but L16 does not: 20 ms at 48 kHz is 1932 bytes mono and 3852 stereo
// (IP-fragmented on a real path), so the bound is a 40 ms stereo packet's.
const bufSize = 8192

// Latch says which source a leg latches to.
type Latch int

const (
	// LatchAny latches to the first valid packet from any source: phones
	// behind NAT put their private address in SDP, so only the packet
	// tells where they are (rtpengine's default).
	LatchAny Latch = iota
	// LatchSameIP latches only to a source with the IP address the leg
	// expects (Leg.Expect), when one is known, and any port: a signalling
	// layer that expects the SIP source address keeps strangers from
	// taking a stream.
	LatchSameIP
)

// Config configures an Anchor. Zero values mean the defaults above.
type Config struct {
	// IP is the address the media sockets bind to: :: for every IPv4 and
	// IPv6 address, 0.0.0.0 for every IPv4 one. Required.
	IP               netip.Addr
	MinPort, MaxPort uint16
	Timeout          time.Duration
	Latch            Latch
	Logger           *slog.Logger // nil: discard
	Now              func() time.Time
	// Listen opens one media socket; nil is sockets.ListenPacket. A test
	// seam (a port another process holds).
	Listen func(netip.AddrPort) (*net.UDPConn, error)
}

// ErrClosed is returned by NewCall on a closed Anchor.
var ErrClosed = errors.New("anchor: closed")

// Anchor owns the media port range and the calls relayed through it.
type Anchor struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	ports *ports
	lat   histogram
	// pollers read the calls' sockets (relay_linux.go); set up in New,
	// then read under mu by NewCall.
	pollers pollers

	mu     sync.Mutex
	calls  map[*Call]struct{}
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New validates cfg and starts the media timeout.
func New(cfg Config) (*Anchor, error) {
	if !cfg.IP.IsValid() {
		return nil, errors.New("anchor: no IP address to bind")
	}
	if cfg.MinPort == 0 && cfg.MaxPort == 0 {
		cfg.MinPort, cfg.MaxPort = DefaultMinPort, DefaultMaxPort
	}
	if cfg.MinPort == 0 {
		return nil, fmt.Errorf("anchor: media port range %d-%d starts at 0", cfg.MinPort, cfg.MaxPort)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("anchor: negative media timeout %v", cfg.Timeout)
	}
	if cfg.Latch != LatchAny && cfg.Latch != LatchSameIP {
		return nil, fmt.Errorf("anchor: unknown latch mode %d", cfg.Latch)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Listen == nil {
		cfg.Listen = func(a netip.AddrPort) (*net.UDPConn, error) { return sockets.ListenPacket(a, nil) }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p, err := newPorts(cfg.IP, cfg.MinPort, cfg.MaxPort, cfg.Listen)
	if err != nil {
		return nil, err
	}
	a := &Anchor{cfg: cfg, log: log, now: cfg.Now, ports: p, calls: map[*Call]struct{}{}, stop: make(chan struct{})}
	a.startPollers()
	a.wg.Add(1)
	go a.expire()
	return a, nil
}

// Calls reports how many calls are open.
func (a *Anchor) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

// PortPairs reports how many RTP/RTCP port pairs are in use (two a call).
func (a *Anchor) PortPairs() int { return a.ports.inUse() }

// Close closes every call and stops the media timeout. It is idempotent.
func (a *Anchor) Close() error {
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		calls := make([]*Call, 0, len(a.calls))
		for c := range a.calls {
			calls = append(calls, c)
		}
		a.mu.Unlock()
		close(a.stop)
		a.wg.Wait()
		for _, c := range calls {
			c.close(ReasonAnchorClosed)
		}
		a.stopPollers()
	})
	return nil
}

// expire closes the calls that carried no media for cfg.Timeout.
func (a *Anchor) expire() {
	defer a.wg.Done()
	t := time.NewTicker(min(a.cfg.Timeout/4, time.Second))
	defer t.Stop()
	var idle []*Call
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		now := a.now().UnixNano()
		idle = idle[:0]
		a.mu.Lock()
		for c := range a.calls {
			if time.Duration(now-c.lastMedia()) > a.cfg.Timeout {
				idle = append(idle, c)
			}
		}
		a.mu.Unlock()
		for _, c := range idle {
			c.close(ReasonTimeout)
		}
	}
}

func (a *Anchor) remove(c *Call) {
	a.mu.Lock()
	delete(a.calls, c)
	a.mu.Unlock()
}
