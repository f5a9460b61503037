package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
)

// metrics serves the Prometheus text exposition format (version 0.0.4).
func (d *Daemon) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	d.WriteMetrics(w)
}

// WriteMetrics writes every counter in the Prometheus text format.
func (d *Daemon) WriteMetrics(out io.Writer) error {
	w := &promWriter{w: bufio.NewWriter(out)}
	w.metric("natkit_build_info", "gauge", "natkit version.", []sample{{labels: label("version", d.cfg.Version), value: 1}})
	if !d.started.IsZero() {
		w.metric("natkit_start_time_seconds", "gauge", "Start time of natkit serve, seconds since the epoch.",
			[]sample{{value: float64(d.started.UnixNano()) / 1e9}})
	}
	w.metric("go_goroutines", "gauge", "Number of goroutines.", []sample{{value: float64(runtime.NumGoroutine())}})
	if d.stun != nil {
		w.metric("natkit_stun_info", "gauge", "STUN server configuration: how much of RFC 5780 it offers (full, port-only, off).",
			[]sample{{labels: label("rfc5780", d.stun.Mode().String()), value: 1}})
		writeSTUN(w, d.stun.Stats())
	}
	if d.turn != nil {
		writeTURN(w, d.turn.Stats())
	}
	if d.rendezvous != nil {
		writeRendezvous(w, d.rendezvous.Stats())
	}
	if d.pbx != nil {
		writeSIP(w, d.pbx.Stats())
	}
	if d.media != nil {
		w.metric("natkit_media_calls", "gauge", "Calls whose media the PBX relays.", []sample{{value: float64(d.media.Calls())}})
		w.metric("natkit_media_port_pairs", "gauge", "RTP/RTCP port pairs of the media relay in use.", []sample{{value: float64(d.anchor.PortPairs())}})
	}
	return w.w.Flush()
}

func writeSTUN(w *promWriter, st stunserver.Stats) {
	var msgs []sample
	for _, v := range stunserver.Verdicts() {
		msgs = append(msgs,
			sample{labels: label("transport", "udp") + "," + label("verdict", v.String()), value: float64(st.UDP[v])},
			sample{labels: label("transport", "stream") + "," + label("verdict", v.String()), value: float64(st.Stream[v])})
	}
	w.metric("natkit_stun_messages_total", "counter", "STUN messages received, by transport (udp, stream = tcp and tls) and what the server did with them (drop_rate_limit: an answer withheld by the per-source limit, whose budget the rendezvous server's answers share; forwarded: handed to TURN on the shared port).", msgs)
	one := func(name, typ, help string, v uint64) { w.metric(name, typ, help, []sample{{value: float64(v)}}) }
	one("natkit_stun_udp_batches_total", "counter", "UDP receive system calls that returned datagrams.", st.UDPBatches)
	one("natkit_stun_udp_read_errors_total", "counter", "Failed UDP receive system calls.", st.UDPReadErrors)
	one("natkit_stun_udp_write_errors_total", "counter", "UDP responses the kernel refused.", st.UDPWriteErrors)
	one("natkit_stun_udp_changed_total", "counter", "UDP responses sent from another address or port than the request came to (RFC 5780 CHANGE-REQUEST).", st.UDPChanged)
	one("natkit_stun_udp_response_port_total", "counter", "UDP responses sent to another port of the source (RFC 5780 RESPONSE-PORT).", st.UDPResponsePort)
	one("natkit_stun_connections_accepted_total", "counter", "TCP and TLS connections accepted.", st.ConnsAccepted)
	one("natkit_stun_connections_rejected_total", "counter", "Connections closed at once because the connection limit was reached.", st.ConnsRejected)
	one("natkit_stun_connections_rejected_per_ip_total", "counter", "Connections closed at once because their source IP (IPv6: /64) had the per-IP connection limit open.", st.ConnsRejectedPerIP)
	one("natkit_stun_connections_idle_closed_total", "counter", "Connections closed by the idle timeout.", st.ConnsIdle)
	one("natkit_stun_connections_bad_closed_total", "counter", "Connections closed for bad framing or a failed TLS handshake.", st.ConnsBad)
	one("natkit_stun_connections_open", "gauge", "Open TCP and TLS connections.", st.ConnsOpen)
	one("natkit_stun_udp_forward_dropped_total", "counter", "Datagrams for TURN (verdict forwarded) dropped because TURN's queue was full.", st.UDPForwardDropped)
	one("natkit_stun_connections_forwarded_total", "counter", "TCP and TLS connections handed to TURN at their first TURN message.", st.ConnsForwarded)
}

func writeTURN(w *promWriter, st turnserver.Stats) {
	one := func(name, typ, help string, v int64) { w.metric(name, typ, help, []sample{{value: float64(v)}}) }
	one("natkit_turn_allocations_active", "gauge", "Live TURN allocations.", st.Allocations)
	one("natkit_turn_users", "gauge", "Users with a live allocation.", st.Users)
	one("natkit_turn_allocations_total", "counter", "Allocations created.", st.AllocationsTotal)
	one("natkit_turn_allocations_released_total", "counter", "Allocations released or expired.", st.Released)
	one("natkit_turn_challenges_total", "counter", "401 answers (challenges and failed authentications).", st.Challenges)
	one("natkit_turn_challenges_dropped_total", "counter", "Requests left unanswered because their source had spent its 401 budget.", st.ChallengesDropped)
	one("natkit_turn_auth_failures_total", "counter", "Requests with a wrong username, realm or MESSAGE-INTEGRITY.", st.AuthFailures)
	one("natkit_turn_wrong_credentials_total", "counter", "441 answers: a request on an allocation under another username.", st.WrongCredentials)
	one("natkit_turn_quota_rejections_total", "counter", "486 and 508 answers: a user's or the server's allocation quota was full.", st.QuotaRejections)
	one("natkit_turn_peer_denied_total", "counter", "Permissions, channels and Send indications refused by the peer policy.", st.PeerDenied)
	one("natkit_turn_relay_denied_total", "counter", "Relayed datagrams dropped by the peer policy.", st.RelayDenied)
	one("natkit_turn_refusals_total", "counter", "Error answers given by natkit's policy layer.", st.Refusals)
	w.metric("natkit_turn_relayed_packets_total", "counter", "Datagrams relayed, by direction.", []sample{
		{labels: label("direction", "to_peer"), value: float64(st.RelayedToPeers)},
		{labels: label("direction", "from_peer"), value: float64(st.RelayedFromPeers)}})
	one("natkit_turn_dropped_total", "counter", "Client datagrams and frames that were not TURN, or too large.", st.Dropped)
	one("natkit_turn_connections_refused_total", "counter", "TCP and TLS connections refused (connection limit).", st.ConnsRefused)
	one("natkit_turn_connections_refused_per_ip_total", "counter", "TCP and TLS connections refused because their source IP (IPv6: /64) had the per-IP connection limit open.", st.ConnsRefusedPerIP)
	one("natkit_turn_connections_idle_closed_total", "counter", "TCP and TLS connections closed by the idle timeout.", st.ConnsIdle)
}

func writeRendezvous(w *promWriter, st *rendezvous.Stats) {
	one := func(name, typ, help string, v int64) { w.metric(name, typ, help, []sample{{value: float64(v)}}) }
	one("natkit_rendezvous_messages_total", "counter", "Datagrams and TCP frames received.", st.Received.Load())
	one("natkit_rendezvous_dropped_total", "counter", "Messages dropped: garbage, bad tags, over limits.", st.Dropped.Load())
	one("natkit_rendezvous_bad_auth_total", "counter", "Signatures or MACs that did not verify.", st.BadAuth.Load())
	one("natkit_rendezvous_rate_limited_total", "counter", "JOINs refused by the per-source rate limit.", st.RateLimited.Load())
	one("natkit_rendezvous_stun_answered_total", "counter", "STUN Binding requests answered on the rendezvous port.", st.STUN.Load())
	one("natkit_rendezvous_answers_rate_limited_total", "counter", "UDP answers to addresses not yet proven (STUN, COOKIE, ERROR to a JOIN without a valid cookie) withheld by the per-source budget shared with the STUN server.", st.AnswersLimited.Load())
	one("natkit_rendezvous_sessions_total", "counter", "Sessions created.", st.Sessions.Load())
	one("natkit_rendezvous_sessions_paired_total", "counter", "Sessions that got their second peer.", st.Paired.Load())
	one("natkit_rendezvous_joins_refused_total", "counter", "JOINs refused: stale cookie, session full, server busy or quota exceeded.", st.Refused.Load())
	one("natkit_rendezvous_quota_exceeded_total", "counter", "JOINs refused because the source's address (IPv6 /64) or network (IPv4 /24, IPv6 /48) held its quota of sessions.", st.QuotaExceeded.Load())
	one("natkit_rendezvous_sessions_expired_total", "counter", "Sessions removed on expiry.", st.Expired.Load())
	one("natkit_rendezvous_sessions_active", "gauge", "Live sessions.", st.LiveSessions.Load())
	one("natkit_rendezvous_tcp_connections", "gauge", "Open TCP client connections.", st.TCPConns.Load())
	one("natkit_rendezvous_tcp_refused_total", "counter", "TCP connections refused (connection limit).", st.TCPRefused.Load())
	one("natkit_rendezvous_tcp_refused_per_ip_total", "counter", "TCP connections refused because their source IP (IPv6: /64) had the per-IP connection limit open.", st.TCPRefusedPerIP.Load())
	one("natkit_rendezvous_tcp_idle_closed_total", "counter", "TCP connections closed by the idle timeout.", st.TCPIdle.Load())
}

func writeSIP(w *promWriter, st pbx.Stats) {
	one := func(name, typ, help string, v uint64) { w.metric(name, typ, help, []sample{{value: float64(v)}}) }
	one("natkit_sip_requests_total", "counter", "SIP requests parsed and handled.", st.Requests)
	w.metric("natkit_sip_responses_total", "counter", "SIP responses sent, by class.", []sample{
		{labels: label("class", "1xx"), value: float64(st.Responses1xx)},
		{labels: label("class", "2xx"), value: float64(st.Responses2xx)},
		{labels: label("class", "3xx"), value: float64(st.Responses3xx)},
		{labels: label("class", "4xx"), value: float64(st.Responses4xx)},
		{labels: label("class", "5xx"), value: float64(st.Responses5xx)},
		{labels: label("class", "6xx"), value: float64(st.Responses6xx)}})
	one("natkit_sip_auth_failures_total", "counter", "Requests with wrong, replayed or throttled digest credentials.", st.AuthFailures)
	one("natkit_sip_registrations_total", "counter", "REGISTERs answered 200.", st.Registrations)
	one("natkit_sip_calls_proxied_total", "counter", "INVITEs forked to at least one contact.", st.CallsProxied)
	one("natkit_sip_calls_answered_total", "counter", "Proxied INVITEs a 2xx came back for.", st.CallsAnswered)
	one("natkit_sip_calls_redirected_total", "counter", "INVITEs answered 302 (redirect mode).", st.CallsRedirected)
	one("natkit_sip_keepalives_total", "counter", "Keep-alives sent to NATed bindings.", st.KeepAlives)
	one("natkit_sip_keepalive_replies_total", "counter", "Answers to keep-alive OPTIONS.", st.KeepAliveReplies)
	one("natkit_sip_dropped_malformed_total", "counter", "Unparseable SIP messages dropped.", st.DroppedMalformed)
	one("natkit_sip_rejected_malformed_total", "counter", "Parsed but invalid requests answered 400.", st.RejectedMalformed)
	one("natkit_sip_dropped_rate_limit_total", "counter", "Packets dropped over a source's --sip-rate.", st.DroppedRateLimit)
	one("natkit_sip_stray_responses_total", "counter", "Responses matching no transaction.", st.StrayResponses)
}

type sample struct {
	labels string
	value  float64
}

type promWriter struct{ w *bufio.Writer }

func (p *promWriter) metric(name, typ, help string, samples []sample) {
	fmt.Fprintf(p.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	for _, s := range samples {
		p.w.WriteString(name)
		if s.labels != "" {
			p.w.WriteString("{" + s.labels + "}")
		}
		p.w.WriteString(" " + strconv.FormatFloat(s.value, 'g', -1, 64) + "\n")
	}
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func label(k, v string) string { return k + `="` + labelEscaper.Replace(v) + `"` }
