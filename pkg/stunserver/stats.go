package stunserver

import "sync/atomic"

// Stats is a snapshot of a Server's counters, for metrics. Counters only
// grow, except ConnsOpen.
type Stats struct {
	// UDP and Stream count datagrams and stream messages by verdict.
	UDP    [numVerdicts]uint64
	Stream [numVerdicts]uint64
	// UDPReadErrors and UDPWriteErrors count failed system calls;
	// UDPBatches counts reads that returned datagrams.
	UDPReadErrors, UDPWriteErrors, UDPBatches uint64
	// UDPChanged counts answers sent from another socket than the one
	// that received the request (CHANGE-REQUEST), UDPResponsePort those
	// sent to another port (RESPONSE-PORT).
	UDPChanged, UDPResponsePort uint64
	// ConnsAccepted counts accepted TCP and TLS connections, ConnsRejected
	// those closed at once because MaxConns were open, ConnsRejectedPerIP
	// those closed at once because their source had MaxConnsPerIP open,
	// ConnsOpen the open ones, ConnsIdle those closed by IdleTimeout, ConnsBad those closed
	// for bad framing or a failed TLS handshake.
	ConnsAccepted, ConnsRejected, ConnsRejectedPerIP, ConnsOpen, ConnsIdle, ConnsBad uint64
	// With Config.Share: UDP[Forwarded] and Stream[Forwarded] count what
	// went to the sharer, UDPForwardDropped the datagrams among them that
	// found its queue full, ConnsForwarded the streams handed over.
	UDPForwardDropped, ConnsForwarded uint64
}

// Verdicts lists every verdict, for exposing Stats.UDP and Stats.Stream.
func Verdicts() []Verdict {
	v := make([]Verdict, numVerdicts)
	for i := range v {
		v[i] = Verdict(i)
	}
	return v
}

// workerStats are one UDP goroutine's counters, on their own cache lines so
// that goroutines on different cores do not share them.
type workerStats struct {
	_            [64]byte
	verdicts     [numVerdicts]atomic.Uint64
	readErr      atomic.Uint64
	writeErr     atomic.Uint64
	batches      atomic.Uint64
	changed      atomic.Uint64
	responsePort atomic.Uint64
	fwdDropped   atomic.Uint64
	_            [64]byte
}

type streamStats struct {
	verdicts                                  [numVerdicts]atomic.Uint64
	accepted, rejected, open, idle, badFramed atomic.Uint64
	forwarded, rejectedPerIP                  atomic.Uint64
}
