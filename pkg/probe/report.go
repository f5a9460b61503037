package probe

import (
	"net/netip"
	"slices"
	"time"

	"github.com/natkit/natkit/pkg/failure"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/stunclient"
)

// Report is the result of a probe and the JSON document of
// `natkit probe --json` (schema natkit.probe/v1). Keys are always present;
// unknowns are null.
type Report struct {
	render.Envelope
	// Transport is the transport asked for (servers given as stuns: URIs
	// use tls whatever it says; see each result's own transport).
	Transport string `json:"transport"`
	// MappedAddress is the public address every answering server agrees on
	// (over TCP/TLS, where each server gets its own connection, only the IP
	// is compared and this holds the first answer); null when none answered
	// or they disagree.
	MappedAddress *string `json:"mapped_address"`
	// Consistent tells whether the answering servers agree; null when fewer
	// than two answered.
	Consistent *bool `json:"consistent"`
	// Answered counts servers that answered, of Servers probed.
	Answered   int     `json:"answered"`
	Servers    int     `json:"servers"`
	DurationMs float64 `json:"duration_ms"`
	// FailureReason says why no server answered (name-resolution,
	// no-route, no-answer, udp-blocked, refused, tls-certificate,
	// server-error, error) and Error says it in one line with what to try;
	// both null when a server answered.
	FailureReason *failure.Reason `json:"failure_reason"`
	Error         *string         `json:"error"`
	Results       []Result        `json:"results"`
}

// Result is what one server said.
type Result struct {
	// Server is the server as given; ServerAddress the IP:PORT it resolved to.
	Server        string  `json:"server"`
	ServerAddress *string `json:"server_address"`
	Transport     string  `json:"transport"`
	// Success means at least one transaction got a Binding success answer.
	Success       bool    `json:"success"`
	LocalAddress  *string `json:"local_address"`
	MappedAddress *string `json:"mapped_address"`
	// MappedAttribute is "XOR-MAPPED-ADDRESS" or "MAPPED-ADDRESS".
	MappedAttribute *string `json:"mapped_attribute"`
	// RFC3489 marks a classic answer (MAPPED-ADDRESS, SOURCE-ADDRESS, ...).
	RFC3489 *bool `json:"rfc3489"`
	// RTTMs is the median round-trip time of the answered transactions.
	RTTMs          *float64 `json:"rtt_ms"`
	RTTMinMs       *float64 `json:"rtt_min_ms"`
	RTTMedianMs    *float64 `json:"rtt_median_ms"`
	RTTMaxMs       *float64 `json:"rtt_max_ms"`
	ResponseOrigin *string  `json:"response_origin"`
	// ReplyFrom is the source address of the last answer.
	ReplyFrom    *string `json:"reply_from"`
	OtherAddress *string `json:"other_address"`
	Software     *string `json:"software"`
	// Sent and Received count transactions; Retransmissions counts repeated
	// requests over UDP.
	Sent            int `json:"sent"`
	Received        int `json:"received"`
	Retransmissions int `json:"retransmissions"`
	// ErrorCode is the STUN ERROR-CODE of an error response.
	ErrorCode *int    `json:"error_code"`
	Error     *string `json:"error"`
	// FailureReason classifies Error (see Report.FailureReason).
	FailureReason *failure.Reason `json:"failure_reason"`
	// Transactions are the raw probes, in order.
	Transactions []Transaction `json:"transactions"`
}

// Transaction is one Binding transaction.
type Transaction struct {
	Attempts      int                    `json:"attempts"`
	RTTMs         *float64               `json:"rtt_ms"`
	ReplyFrom     *string                `json:"reply_from"`
	MappedAddress *string                `json:"mapped_address"`
	Error         *string                `json:"error"`
	Attributes    []stunclient.Attribute `json:"attributes"`
}

func msp(d time.Duration) *float64 { v := render.Millis(d); return &v }

func str(s string) *string { return &s }

func addrp(ap netip.AddrPort) *string {
	if !ap.IsValid() {
		return nil
	}
	return str(ap.String())
}

// rttStats returns min, median and max (median of an even count: the mean
// of the middle two).
func rttStats(rtts []time.Duration) (lo, med, hi time.Duration) {
	s := slices.Clone(rtts)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0, 0, 0
	}
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return s[0], med, s[n-1]
}

// summarize fills the report-level fields from the results.
func (r *Report) summarize() {
	r.Servers = len(r.Results)
	var first *Result
	consistent := true
	for i := range r.Results {
		res := &r.Results[i]
		if !res.Success || res.MappedAddress == nil {
			continue
		}
		r.Answered++
		if first == nil {
			first = res
			continue
		}
		if !sameMapping(*first, *res) {
			consistent = false
		}
	}
	if first == nil {
		return
	}
	if r.Answered >= 2 {
		r.Consistent = &consistent
	}
	if consistent {
		r.MappedAddress = first.MappedAddress
	}
}

// sameMapping compares two answers: the whole IP:PORT over UDP, where every
// server is probed from one socket, else only the IP.
func sameMapping(a, b Result) bool {
	if a.Transport == string(UDP) && b.Transport == string(UDP) && a.LocalAddress != nil && b.LocalAddress != nil &&
		*a.LocalAddress == *b.LocalAddress {
		return *a.MappedAddress == *b.MappedAddress
	}
	pa, errA := netip.ParseAddrPort(*a.MappedAddress)
	pb, errB := netip.ParseAddrPort(*b.MappedAddress)
	return errA == nil && errB == nil && pa.Addr() == pb.Addr()
}
