package pbx

import "sync/atomic"

// Stats are the server's counters since New, for the daemon to export.
type Stats struct {
	Requests          uint64 `json:"requests"`             // parsed requests handled
	Responses1xx      uint64 `json:"responses_1xx"`        // responses sent, by class
	Responses2xx      uint64 `json:"responses_2xx"`        //
	Responses3xx      uint64 `json:"responses_3xx"`        //
	Responses4xx      uint64 `json:"responses_4xx"`        //
	Responses5xx      uint64 `json:"responses_5xx"`        //
	Responses6xx      uint64 `json:"responses_6xx"`        //
	AuthFailures      uint64 `json:"auth_failures"`        // wrong, replayed or throttled credentials
	Registrations     uint64 `json:"registrations"`        // REGISTERs answered 200
	CallsProxied      uint64 `json:"calls_proxied"`        // INVITEs forked to at least one contact
	CallsAnswered     uint64 `json:"calls_answered"`       // of which a 2xx came back
	CallsRedirected   uint64 `json:"calls_redirected"`     // 302s
	CallsToVoicemail  uint64 `json:"calls_to_voicemail"`   // unanswered INVITEs handed to voicemail
	MWISubscribes     uint64 `json:"mwi_subscribes"`       // message-summary SUBSCRIBEs answered 200
	MWINotifies       uint64 `json:"mwi_notifies"`         // message-summary NOTIFYs sent
	KeepAlives        uint64 `json:"keepalives"`           // keep-alives sent to NATed bindings
	KeepAliveReplies  uint64 `json:"keepalive_replies"`    // answers to keep-alive OPTIONS
	DroppedMalformed  uint64 `json:"dropped_malformed"`    // unparseable messages dropped
	RejectedMalformed uint64 `json:"rejected_malformed"`   // parsed but invalid requests answered 400
	DroppedRateLimit  uint64 `json:"dropped_rate_limit"`   // packets over a source's rate
	StrayResponses    uint64 `json:"stray_responses"`      // responses matching no transaction
	ConnsRefusedPerIP uint64 `json:"conns_refused_per_ip"` // TCP/TLS connections over a source's cap
	ConnsRefusedTotal uint64 `json:"conns_refused_total"`  // TCP/TLS connections over the server's cap
}

// counters is Stats updated concurrently.
type counters struct {
	requests, authFailures, registrations                      atomic.Uint64
	responses                                                  [6]atomic.Uint64
	callsProxied, callsAnswered, callsRedirected               atomic.Uint64
	keepAlives, keepAliveReplies                               atomic.Uint64
	droppedMalformed, rejectedMalformed, droppedRate, strayRes atomic.Uint64
	sipgoRejected, responsesIn                                 atomic.Uint64
	statelessRegisters                                         atomic.Uint64 // answered in the read loop (stateless.go)
	statelessChallenges                                        atomic.Uint64 // INVITEs challenged in the read loop
	statelessAcks                                              atomic.Uint64 // ACKs forwarded or absorbed in the read loop
	statelessByes                                              atomic.Uint64 // BYEs forwarded by the read loop
	statelessResponses                                         atomic.Uint64 // their responses sent up
	voicemail, mwiSubscribes, mwiNotifies                      atomic.Uint64
	connsRefusedPerIP, connsRefusedTotal                       atomic.Uint64
}

func (c *counters) response(code int) {
	if i := code/100 - 1; i >= 0 && i < len(c.responses) {
		c.responses[i].Add(1)
	}
}

func (c *counters) snapshot() Stats {
	return Stats{
		Requests:          c.requests.Load(),
		Responses1xx:      c.responses[0].Load(),
		Responses2xx:      c.responses[1].Load(),
		Responses3xx:      c.responses[2].Load(),
		Responses4xx:      c.responses[3].Load(),
		Responses5xx:      c.responses[4].Load(),
		Responses6xx:      c.responses[5].Load(),
		AuthFailures:      c.authFailures.Load(),
		Registrations:     c.registrations.Load(),
		CallsProxied:      c.callsProxied.Load(),
		CallsAnswered:     c.callsAnswered.Load(),
		CallsRedirected:   c.callsRedirected.Load(),
		CallsToVoicemail:  c.voicemail.Load(),
		MWISubscribes:     c.mwiSubscribes.Load(),
		MWINotifies:       c.mwiNotifies.Load(),
		KeepAlives:        c.keepAlives.Load(),
		KeepAliveReplies:  c.keepAliveReplies.Load(),
		DroppedMalformed:  c.droppedMalformed.Load(),
		RejectedMalformed: c.rejectedMalformed.Load() + c.sipgoRejected.Load(),
		DroppedRateLimit:  c.droppedRate.Load(),
		StrayResponses:    c.strayRes.Load(),
		ConnsRefusedPerIP: c.connsRefusedPerIP.Load(),
		ConnsRefusedTotal: c.connsRefusedTotal.Load(),
	}
}
