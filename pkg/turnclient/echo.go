package turnclient

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// EchoStats counts what an echo peer did.
type EchoStats struct {
	Packets atomic.Int64
	Bytes   atomic.Int64
}

// Echo sends every datagram on pc back to its sender until ctx ends. It is
// the peer `natkit turn echo` runs and `natkit turn --peer` measures
// against. It does not close pc.
func Echo(ctx context.Context, pc net.PacketConn, st *EchoStats) error {
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 64*1024)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			continue // ICMP errors from a peer that went away
		}
		if st != nil {
			st.Packets.Add(1)
			st.Bytes.Add(int64(n))
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}
