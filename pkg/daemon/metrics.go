package daemon

import (
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/natkit/natkit/pkg/buildinfo"
	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/rendezvous"
	"github.com/natkit/natkit/pkg/stunserver"
	"github.com/natkit/natkit/pkg/turnserver"
)

// newRegistry is the daemon's own Prometheus registry (not the global
// one): natkit's collector, which reads each server's Stats at scrape
// time, the Go runtime's and the process's collectors.
func newRegistry(d *Daemon) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collector{d},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// metricsHandler serves the registry: the Prometheus text format, or
// what the scraper negotiates.
func (d *Daemon) metricsHandler() http.Handler {
	return promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(d.cfg.Logger.Handler(), slog.LevelWarn),
		// A failing collector costs its own samples, not the scrape.
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes are cheap; the connection limit bounds them anyway.
		MaxRequestsInFlight: 4,
	})
}

// WriteMetrics writes every metric in the Prometheus text format (0.0.4).
func (d *Daemon) WriteMetrics(out io.Writer) error {
	mfs, err := d.reg.Gather()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(out, mf); err != nil {
			return err
		}
	}
	return nil
}

// collector is natkit's metrics: each server's counters as its Stats
// give them at the scrape, no bookkeeping of its own.
type collector struct{ d *Daemon }

var (
	buildInfoDesc = prometheus.NewDesc("natkit_build_info", "natkit version, the VCS revision and the Go release it was built from.",
		[]string{"version", "revision", "goversion"}, nil)
	startTimeDesc = prometheus.NewDesc("natkit_start_time_seconds", "Start time of natkit serve, seconds since the epoch.", nil, nil)
	stunInfoDesc  = prometheus.NewDesc("natkit_stun_info", "STUN server configuration: how much of RFC 5780 it offers (full, port-only, off).",
		[]string{"rfc5780"}, nil)
	stunMessagesDesc = prometheus.NewDesc("natkit_stun_messages_total", "STUN messages received, by transport (udp, stream = tcp and tls) and what the server did with them (drop_rate_limit: an answer withheld by the per-source limit, whose budget the rendezvous server's answers share; forwarded: handed to TURN on the shared port).",
		[]string{"transport", "verdict"}, nil)
	turnRelayedDesc  = prometheus.NewDesc("natkit_turn_relayed_packets_total", "Datagrams relayed, by direction.", []string{"direction"}, nil)
	sipResponsesDesc = prometheus.NewDesc("natkit_sip_responses_total", "SIP responses sent, by class.", []string{"class"}, nil)
	mediaCallsDesc   = prometheus.NewDesc("natkit_media_calls", "Calls whose media the PBX relays.", nil, nil)
	mediaPairsDesc   = prometheus.NewDesc("natkit_media_port_pairs", "RTP/RTCP port pairs of the media relay in use.", nil, nil)
	mediaICEDesc     = prometheus.NewDesc("natkit_media_ice_offers_total", "SDP offers carrying ICE (a=ice-ufrag) that the PBX forwarded without anchoring: the two ends find their own path.", nil, nil)
)

// stat is one unlabelled metric read from a server's Stats S.
type stat[S any] struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	get  func(S) float64
}

func counter[S any](name, help string, get func(S) float64) stat[S] {
	return stat[S]{prometheus.NewDesc(name, help, nil, nil), prometheus.CounterValue, get}
}

func gauge[S any](name, help string, get func(S) float64) stat[S] {
	return stat[S]{prometheus.NewDesc(name, help, nil, nil), prometheus.GaugeValue, get}
}

func describe[S any](ch chan<- *prometheus.Desc, stats []stat[S]) {
	for _, s := range stats {
		ch <- s.desc
	}
}

func collect[S any](ch chan<- prometheus.Metric, stats []stat[S], v S) {
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(s.desc, s.typ, s.get(v))
	}
}

type (
	stunStats       = stunserver.Stats
	turnStats       = turnserver.Stats
	rendezvousStats = *rendezvous.Stats
	sipStats        = pbx.Stats
)

var stunMetrics = []stat[stunStats]{
	counter("natkit_stun_udp_batches_total", "UDP receive system calls that returned datagrams.", func(s stunStats) float64 { return float64(s.UDPBatches) }),
	counter("natkit_stun_udp_read_errors_total", "Failed UDP receive system calls.", func(s stunStats) float64 { return float64(s.UDPReadErrors) }),
	counter("natkit_stun_udp_write_errors_total", "UDP responses the kernel refused.", func(s stunStats) float64 { return float64(s.UDPWriteErrors) }),
	counter("natkit_stun_udp_changed_total", "UDP responses sent from another address or port than the request came to (RFC 5780 CHANGE-REQUEST).", func(s stunStats) float64 { return float64(s.UDPChanged) }),
	counter("natkit_stun_udp_response_port_total", "UDP responses sent to another port of the source (RFC 5780 RESPONSE-PORT).", func(s stunStats) float64 { return float64(s.UDPResponsePort) }),
	counter("natkit_stun_connections_accepted_total", "TCP and TLS connections accepted.", func(s stunStats) float64 { return float64(s.ConnsAccepted) }),
	counter("natkit_stun_connections_rejected_total", "Connections closed at once because the connection limit was reached.", func(s stunStats) float64 { return float64(s.ConnsRejected) }),
	counter("natkit_stun_connections_rejected_per_ip_total", "Connections closed at once because their source IP (IPv6: /64) had the per-IP connection limit open.", func(s stunStats) float64 { return float64(s.ConnsRejectedPerIP) }),
	counter("natkit_stun_connections_idle_closed_total", "Connections closed by the idle timeout.", func(s stunStats) float64 { return float64(s.ConnsIdle) }),
	counter("natkit_stun_connections_bad_closed_total", "Connections closed for bad framing or a failed TLS handshake.", func(s stunStats) float64 { return float64(s.ConnsBad) }),
	gauge("natkit_stun_connections_open", "Open TCP and TLS connections.", func(s stunStats) float64 { return float64(s.ConnsOpen) }),
	counter("natkit_stun_udp_forward_dropped_total", "Datagrams for TURN (verdict forwarded) dropped because TURN's queue was full.", func(s stunStats) float64 { return float64(s.UDPForwardDropped) }),
	counter("natkit_stun_connections_forwarded_total", "TCP and TLS connections handed to TURN at their first TURN message.", func(s stunStats) float64 { return float64(s.ConnsForwarded) }),
}

var turnMetrics = []stat[turnStats]{
	gauge("natkit_turn_allocations_active", "Live TURN allocations.", func(s turnStats) float64 { return float64(s.Allocations) }),
	gauge("natkit_turn_users", "Users with a live allocation.", func(s turnStats) float64 { return float64(s.Users) }),
	counter("natkit_turn_allocations_total", "Allocations created.", func(s turnStats) float64 { return float64(s.AllocationsTotal) }),
	counter("natkit_turn_allocations_released_total", "Allocations released or expired.", func(s turnStats) float64 { return float64(s.Released) }),
	counter("natkit_turn_challenges_total", "401 answers (challenges and failed authentications).", func(s turnStats) float64 { return float64(s.Challenges) }),
	counter("natkit_turn_challenges_dropped_total", "Requests left unanswered because their source had spent its 401 budget.", func(s turnStats) float64 { return float64(s.ChallengesDropped) }),
	counter("natkit_turn_auth_failures_total", "Requests with a wrong username, realm or MESSAGE-INTEGRITY.", func(s turnStats) float64 { return float64(s.AuthFailures) }),
	counter("natkit_turn_wrong_credentials_total", "441 answers: a request on an allocation under another username.", func(s turnStats) float64 { return float64(s.WrongCredentials) }),
	counter("natkit_turn_quota_rejections_total", "486 and 508 answers: a user's or the server's allocation quota was full.", func(s turnStats) float64 { return float64(s.QuotaRejections) }),
	counter("natkit_turn_peer_denied_total", "Permissions, channels and Send indications refused by the peer policy.", func(s turnStats) float64 { return float64(s.PeerDenied) }),
	counter("natkit_turn_relay_denied_total", "Relayed datagrams dropped by the peer policy.", func(s turnStats) float64 { return float64(s.RelayDenied) }),
	counter("natkit_turn_refusals_total", "Error answers given by natkit's policy layer.", func(s turnStats) float64 { return float64(s.Refusals) }),
	counter("natkit_turn_dropped_total", "Client datagrams and frames that were not TURN, or too large.", func(s turnStats) float64 { return float64(s.Dropped) }),
	counter("natkit_turn_connections_refused_total", "TCP and TLS connections refused (connection limit).", func(s turnStats) float64 { return float64(s.ConnsRefused) }),
	counter("natkit_turn_connections_refused_per_ip_total", "TCP and TLS connections refused because their source IP (IPv6: /64) had the per-IP connection limit open.", func(s turnStats) float64 { return float64(s.ConnsRefusedPerIP) }),
	counter("natkit_turn_connections_idle_closed_total", "TCP and TLS connections closed by the idle timeout.", func(s turnStats) float64 { return float64(s.ConnsIdle) }),
}

var rendezvousMetrics = []stat[rendezvousStats]{
	counter("natkit_rendezvous_messages_total", "Datagrams and TCP frames received.", func(s rendezvousStats) float64 { return float64(s.Received.Load()) }),
	counter("natkit_rendezvous_dropped_total", "Messages dropped: garbage, bad tags, over limits.", func(s rendezvousStats) float64 { return float64(s.Dropped.Load()) }),
	counter("natkit_rendezvous_bad_auth_total", "Signatures or MACs that did not verify.", func(s rendezvousStats) float64 { return float64(s.BadAuth.Load()) }),
	counter("natkit_rendezvous_rate_limited_total", "JOINs refused by the per-source rate limit.", func(s rendezvousStats) float64 { return float64(s.RateLimited.Load()) }),
	counter("natkit_rendezvous_stun_answered_total", "STUN Binding requests answered on the rendezvous port.", func(s rendezvousStats) float64 { return float64(s.STUN.Load()) }),
	counter("natkit_rendezvous_answers_rate_limited_total", "UDP answers to addresses not yet proven (STUN, COOKIE, ERROR to a JOIN without a valid cookie) withheld by the per-source budget shared with the STUN server.", func(s rendezvousStats) float64 { return float64(s.AnswersLimited.Load()) }),
	counter("natkit_rendezvous_sessions_total", "Sessions created.", func(s rendezvousStats) float64 { return float64(s.Sessions.Load()) }),
	counter("natkit_rendezvous_sessions_paired_total", "Sessions that got their second peer.", func(s rendezvousStats) float64 { return float64(s.Paired.Load()) }),
	counter("natkit_rendezvous_joins_refused_total", "JOINs refused: stale cookie, session full, server busy or quota exceeded.", func(s rendezvousStats) float64 { return float64(s.Refused.Load()) }),
	counter("natkit_rendezvous_quota_exceeded_total", "JOINs refused because the source's address (IPv6 /64) or network (IPv4 /24, IPv6 /48) held its quota of sessions.", func(s rendezvousStats) float64 { return float64(s.QuotaExceeded.Load()) }),
	counter("natkit_rendezvous_sessions_expired_total", "Sessions removed on expiry.", func(s rendezvousStats) float64 { return float64(s.Expired.Load()) }),
	gauge("natkit_rendezvous_sessions_active", "Live sessions.", func(s rendezvousStats) float64 { return float64(s.LiveSessions.Load()) }),
	gauge("natkit_rendezvous_tcp_connections", "Open TCP client connections.", func(s rendezvousStats) float64 { return float64(s.TCPConns.Load()) }),
	counter("natkit_rendezvous_tcp_refused_total", "TCP connections refused (connection limit).", func(s rendezvousStats) float64 { return float64(s.TCPRefused.Load()) }),
	counter("natkit_rendezvous_tcp_refused_per_ip_total", "TCP connections refused because their source IP (IPv6: /64) had the per-IP connection limit open.", func(s rendezvousStats) float64 { return float64(s.TCPRefusedPerIP.Load()) }),
	counter("natkit_rendezvous_tcp_idle_closed_total", "TCP connections closed by the idle timeout.", func(s rendezvousStats) float64 { return float64(s.TCPIdle.Load()) }),
}

var sipMetrics = []stat[sipStats]{
	counter("natkit_sip_requests_total", "SIP requests parsed and handled.", func(s sipStats) float64 { return float64(s.Requests) }),
	counter("natkit_sip_auth_failures_total", "Requests with wrong, replayed or throttled digest credentials.", func(s sipStats) float64 { return float64(s.AuthFailures) }),
	counter("natkit_sip_registrations_total", "REGISTERs answered 200.", func(s sipStats) float64 { return float64(s.Registrations) }),
	counter("natkit_sip_calls_proxied_total", "INVITEs forked to at least one contact.", func(s sipStats) float64 { return float64(s.CallsProxied) }),
	counter("natkit_sip_calls_answered_total", "Proxied INVITEs a 2xx came back for.", func(s sipStats) float64 { return float64(s.CallsAnswered) }),
	counter("natkit_sip_calls_redirected_total", "INVITEs answered 302 (redirect mode).", func(s sipStats) float64 { return float64(s.CallsRedirected) }),
	counter("natkit_sip_calls_to_voicemail_total", "Unanswered, busy or unregistered calls handed to voicemail.", func(s sipStats) float64 { return float64(s.CallsToVoicemail) }),
	counter("natkit_sip_mwi_subscribes_total", "message-summary SUBSCRIBEs answered 200 (RFC 3842).", func(s sipStats) float64 { return float64(s.MWISubscribes) }),
	counter("natkit_sip_mwi_notifies_total", "message-summary NOTIFYs sent.", func(s sipStats) float64 { return float64(s.MWINotifies) }),
	counter("natkit_sip_keepalives_total", "Keep-alives sent to NATed bindings.", func(s sipStats) float64 { return float64(s.KeepAlives) }),
	counter("natkit_sip_keepalive_replies_total", "Answers to keep-alive OPTIONS.", func(s sipStats) float64 { return float64(s.KeepAliveReplies) }),
	counter("natkit_sip_dropped_malformed_total", "Unparseable SIP messages dropped.", func(s sipStats) float64 { return float64(s.DroppedMalformed) }),
	counter("natkit_sip_rejected_malformed_total", "Parsed but invalid requests answered 400.", func(s sipStats) float64 { return float64(s.RejectedMalformed) }),
	counter("natkit_sip_dropped_rate_limit_total", "Packets dropped over a source's --sip-rate.", func(s sipStats) float64 { return float64(s.DroppedRateLimit) }),
	counter("natkit_sip_stray_responses_total", "Responses matching no transaction.", func(s sipStats) float64 { return float64(s.StrayResponses) }),
	counter("natkit_sip_connections_refused_per_ip_total", "TCP/TLS connections closed at accept: their source held --max-conns-per-ip.", func(s sipStats) float64 { return float64(s.ConnsRefusedPerIP) }),
	counter("natkit_sip_connections_refused_total", "TCP/TLS connections closed at accept: the server held its total cap.", func(s sipStats) float64 { return float64(s.ConnsRefusedTotal) }),
}

// Describe sends every metric natkit may have; Collect sends those of
// the servers that run.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{buildInfoDesc, startTimeDesc, stunInfoDesc, stunMessagesDesc, turnRelayedDesc, sipResponsesDesc, mediaCallsDesc, mediaPairsDesc, mediaICEDesc} {
		ch <- d
	}
	describe(ch, stunMetrics)
	describe(ch, turnMetrics)
	describe(ch, rendezvousMetrics)
	describe(ch, sipMetrics)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	version := d.cfg.Version
	if version == "" {
		version = buildinfo.Version()
	}
	ch <- prometheus.MustNewConstMetric(buildInfoDesc, prometheus.GaugeValue, 1, version, buildinfo.Revision(), buildinfo.GoVersion())
	if ns := d.started.Load(); ns != 0 {
		ch <- prometheus.MustNewConstMetric(startTimeDesc, prometheus.GaugeValue, float64(ns)/1e9)
	}
	if d.stun != nil {
		ch <- prometheus.MustNewConstMetric(stunInfoDesc, prometheus.GaugeValue, 1, d.stun.Mode().String())
		st := d.stun.Stats()
		for _, v := range stunserver.Verdicts() {
			ch <- prometheus.MustNewConstMetric(stunMessagesDesc, prometheus.CounterValue, float64(st.UDP[v]), "udp", v.String())
			ch <- prometheus.MustNewConstMetric(stunMessagesDesc, prometheus.CounterValue, float64(st.Stream[v]), "stream", v.String())
		}
		collect(ch, stunMetrics, st)
	}
	if d.turn != nil {
		st := d.turn.Stats()
		collect(ch, turnMetrics, st)
		ch <- prometheus.MustNewConstMetric(turnRelayedDesc, prometheus.CounterValue, float64(st.RelayedToPeers), "to_peer")
		ch <- prometheus.MustNewConstMetric(turnRelayedDesc, prometheus.CounterValue, float64(st.RelayedFromPeers), "from_peer")
	}
	if d.rendezvous != nil {
		collect(ch, rendezvousMetrics, d.rendezvous.Stats())
	}
	if d.pbx != nil {
		st := d.pbx.Stats()
		collect(ch, sipMetrics, st)
		for _, r := range []struct {
			class string
			n     uint64
		}{{"1xx", st.Responses1xx}, {"2xx", st.Responses2xx}, {"3xx", st.Responses3xx}, {"4xx", st.Responses4xx}, {"5xx", st.Responses5xx}, {"6xx", st.Responses6xx}} {
			ch <- prometheus.MustNewConstMetric(sipResponsesDesc, prometheus.CounterValue, float64(r.n), r.class)
		}
	}
	if d.media != nil {
		ch <- prometheus.MustNewConstMetric(mediaCallsDesc, prometheus.GaugeValue, float64(d.media.Calls()))
		ch <- prometheus.MustNewConstMetric(mediaPairsDesc, prometheus.GaugeValue, float64(d.anchor.PortPairs()))
		ch <- prometheus.MustNewConstMetric(mediaICEDesc, prometheus.CounterValue, float64(d.media.ICEOffers()))
	}
}
