//go:build !linux

package detect

import (
	"context"
	"net/netip"
)

// trace needs IP_RECVERR, which only Linux has; elsewhere NAT layers come
// from the interface and mapped addresses alone.
func (r *run) trace(ctx context.Context, server netip.AddrPort) *traceResult {
	close(r.traceDone)
	return &traceResult{test: Test{Name: "path", Requests: []Request{}, Result: "path trace not supported on this system"}, unsupported: true}
}
