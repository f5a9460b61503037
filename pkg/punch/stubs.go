package punch

import (
	"context"
	"net"
	"net/netip"

	"github.com/natkit/natkit/pkg/rendezvous"
)

func (p *puncher) tcpPrepare(ctx context.Context) (net.Listener, netip.AddrPort, error) {
	return nil, netip.AddrPort{}, nil
}

func (p *puncher) runTCP(ctx context.Context, rv *rendezvous.Client, pair rendezvous.Pair, self, peer peerView, pc card, key []byte) (Observation, FailureReason) {
	return Observation{}, ReasonTCPRefused
}

func (p *puncher) runICE(ctx context.Context, rv *rendezvous.Client, pair rendezvous.Pair, peer peerView, pc card) (Observation, FailureReason) {
	return Observation{}, ReasonICEFailed
}

func (p *puncher) runRelay(ctx context.Context, rv *rendezvous.Client, pair rendezvous.Pair, key []byte) (Observation, bool) {
	return Observation{}, false
}
