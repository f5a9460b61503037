package punch

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/natkit/natkit/pkg/portalloc"
	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunclient"
)

// NAT classification strings, as natkit.detect/v1 spells them.
const (
	TypeOpenInternet       = "open-internet"
	TypeFullCone           = "full-cone"
	TypeRestrictedCone     = "restricted-cone"
	TypePortRestrictedCone = "port-restricted-cone"
	TypeSymmetric          = "symmetric"
	TypeUDPFirewall        = "symmetric-udp-firewall"
	TypeUDPBlocked         = "udp-blocked"
	Unknown                = "unknown"

	EndpointIndependent     = "endpoint-independent"
	AddressDependent        = "address-dependent"
	AddressAndPortDependent = "address-and-port-dependent"

	PortsPreserved  = string(portalloc.Preserved)
	PortsSequential = string(portalloc.Sequential)
	PortsRandom     = string(portalloc.Random)
)

// NAT is one peer's NAT as punch measured it against the rendezvous server
// (which answers STUN on both its addresses): the contract's detect terms
// plus what the strategies need.
type NAT struct {
	NATType           string  `json:"nat_type"`
	MappingBehavior   string  `json:"mapping_behavior"`
	FilteringBehavior string  `json:"filtering_behavior"`
	PortAllocation    string  `json:"port_allocation"`
	PortDelta         *int    `json:"port_delta"`
	BehindNAT         *bool   `json:"behind_nat"`
	LocalAddress      *string `json:"local_address"`
	MappedAddress     *string `json:"mapped_address"`
	// NextPort is the public port the NAT should give the next new flow
	// (sequential allocation only).
	NextPort int `json:"next_port,omitempty"`
	// PortSamples are the mappings the allocation was read from, oldest
	// first.
	PortSamples []portalloc.Sample `json:"port_samples,omitempty"`
}

// Fingerprint budgets.
const (
	// fpBindingTimeout bounds the first Binding: no answer means UDP does
	// not reach the server. Requests at 0, 200, 600 ms (RFC 8489 §6.2.1
	// schedule with a 200 ms RTO: the server is known and near).
	fpBindingTimeout = 1500 * time.Millisecond
	fpRTO            = 200 * time.Millisecond
	// fpChangeFloor is the least wait for a CHANGE-REQUEST answer (RFC 5780
	// §4.4's filtering test): absence is the signal, so the wait is a few
	// RTTs, never less than this.
	fpChangeFloor = 250 * time.Millisecond
	// fpAllocSockets is how many fresh sockets sample the port allocation
	// (with the main socket's one or two mappings: five or six samples,
	// enough for portalloc to forgive one that other traffic disturbed).
	fpAllocSockets = 4
)

// errUDPBlocked means no STUN answer came over UDP.
var errUDPBlocked = errors.New("punch: no UDP answer from the rendezvous server")

// fingerprint measures the NAT in front of sc's socket using the server's
// STUN answers: mapping (RFC 5780 §4.3) from sc towards both server
// addresses, port allocation from two more sockets, filtering (§4.4) from
// CHANGE-REQUEST. local is the socket's address on the host's interface.
// It returns the NAT and the server's other address (OTHER-ADDRESS, zero
// when it has none).
func fingerprint(ctx context.Context, sc *stunclient.PacketConn, server netip.AddrPort, local netip.AddrPort, listen func() (net.PacketConn, error)) (NAT, netip.AddrPort, error) {
	n := NAT{MappingBehavior: Unknown, FilteringBehavior: Unknown, PortAllocation: Unknown, NATType: Unknown}
	n.LocalAddress = strp(local.String())
	cctx, cancel := context.WithTimeout(ctx, fpBindingTimeout)
	r1, err := sc.Do(cctx, net.UDPAddrFromAddrPort(server), stunclient.Request{})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			n.NATType = TypeUDPBlocked
			return n, netip.AddrPort{}, errUDPBlocked
		}
		return n, netip.AddrPort{}, ctx.Err()
	}
	rtt := r1.RTT
	n.MappedAddress = strp(r1.Mapped.String())
	behind := r1.Mapped != local
	n.BehindNAT = &behind
	samples := []portalloc.Sample{{Local: local.Port(), Mapped: r1.Mapped.Port()}}

	if alt := r1.OtherAddress; alt.IsValid() {
		r2, err := sc.Do(ctx, net.UDPAddrFromAddrPort(alt), stunclient.Request{})
		if err == nil {
			if r2.Mapped == r1.Mapped {
				n.MappingBehavior = EndpointIndependent
			} else {
				n.MappingBehavior = AddressAndPortDependent
				samples = append(samples, portalloc.Sample{Local: local.Port(), Mapped: r2.Mapped.Port()})
			}
		}
	}
	// More sockets towards the primary address: their mappings show how
	// the NAT allocates ports. The last is kept for the filtering test.
	extra := allocationSamples(ctx, server, listen)
	var lastSC *stunclient.PacketConn
	var last net.PacketConn
	for i, x := range extra {
		if x.err == nil {
			samples = append(samples, x.sample)
			if lastSC != nil {
				lastSC.Close()
				last.Close()
			}
			lastSC, last = x.sc, x.pc
			extra[i].sc = nil
		}
	}
	for _, x := range extra {
		if x.sc != nil {
			x.sc.Close()
			x.pc.Close()
		}
	}
	if !behind {
		n.PortAllocation = PortsPreserved
	} else if a := portalloc.Classify(samples); a.Allocation != portalloc.Unknown {
		n.PortAllocation = string(a.Allocation)
		if a.Allocation == portalloc.Sequential {
			d := a.Stride
			n.PortDelta = &d
			n.NextPort = int(a.Next())
		}
	}
	n.PortSamples = samples

	if lastSC != nil {
		// CHANGE-REQUEST needs a server with two addresses (OTHER-ADDRESS):
		// a one-address server refuses it (420), which must not read as
		// filtering.
		if r1.OtherAddress.IsValid() {
			n.FilteringBehavior = filtering(ctx, lastSC, server, rtt)
		}
		lastSC.Close()
		last.Close()
	}
	n.NATType = classify(n)
	return n, r1.OtherAddress, nil
}

// allocSocket is one of the port-allocation sockets: its STUN client and
// the mapping it got, or why not.
type allocSocket struct {
	pc     net.PacketConn
	sc     *stunclient.PacketConn
	sample portalloc.Sample
	err    error
}

// allocationSamples opens fpAllocSockets sockets and sends a Binding from
// each, back to back from this goroutine, so that the NAT makes their
// mappings in a row; then it learns each mapping (the first answers are
// strays: retransmissions carry new transactions). The caller closes the
// sockets.
func allocationSamples(ctx context.Context, server netip.AddrPort, listen func() (net.PacketConn, error)) []allocSocket {
	to := net.UDPAddrFromAddrPort(server)
	var out []allocSocket
	for range fpAllocSockets {
		pc, err := listen()
		if err != nil {
			break
		}
		var tid stun.TransactionID
		_, _ = rand.Read(tid[:])
		_, _ = pc.WriteTo(stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, tid).Bytes(), to)
		out = append(out, allocSocket{pc: pc})
	}
	var wg sync.WaitGroup
	for i := range out {
		x := &out[i]
		x.sc = stunclient.NewPacketConn(x.pc, stunclient.Config{RTO: fpRTO, Timeout: fpBindingTimeout})
		wg.Go(func() {
			r, err := x.sc.Do(ctx, to, stunclient.Request{})
			if err != nil {
				x.err = err
				return
			}
			x.sample = portalloc.Sample{Local: addrPortOf(x.pc.LocalAddr()).Port(), Mapped: r.Mapped.Port()}
		})
	}
	wg.Wait()
	return out
}

// filtering runs RFC 5780 §4.4's tests at once: an answer from the other IP
// means endpoint-independent filtering, one from another port of the same
// IP address-dependent, none address-and-port-dependent.
func filtering(ctx context.Context, c *stunclient.PacketConn, server netip.AddrPort, rtt time.Duration) string {
	wait := max(fpChangeFloor, 4*rtt)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var wg sync.WaitGroup
	var ipOK, portOK bool
	for _, f := range []uint32{stun.ChangeIP | stun.ChangePort, stun.ChangePort} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := stunclient.Request{Attrs: []stun.Attr{{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, byte(f)}}}}
			if _, err := c.Do(ctx, net.UDPAddrFromAddrPort(server), req); err == nil {
				if f&stun.ChangeIP != 0 {
					ipOK = true
				} else {
					portOK = true
				}
			}
		}()
	}
	wg.Wait()
	switch {
	case ipOK:
		return EndpointIndependent
	case portOK:
		return AddressDependent
	}
	return AddressAndPortDependent
}

// classify names the textbook NAT type from the behaviours.
func classify(n NAT) string {
	if n.BehindNAT == nil {
		return Unknown
	}
	if !*n.BehindNAT {
		switch n.FilteringBehavior {
		case EndpointIndependent:
			return TypeOpenInternet
		case AddressDependent, AddressAndPortDependent:
			return TypeUDPFirewall
		}
		return Unknown
	}
	switch n.MappingBehavior {
	case AddressDependent, AddressAndPortDependent:
		return TypeSymmetric
	case EndpointIndependent:
		switch n.FilteringBehavior {
		case EndpointIndependent:
			return TypeFullCone
		case AddressDependent:
			return TypeRestrictedCone
		case AddressAndPortDependent:
			return TypePortRestrictedCone
		}
	}
	return Unknown
}

func strp(s string) *string { return &s }
