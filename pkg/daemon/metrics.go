package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/natkit/natkit/pkg/stunserver"
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
	return w.w.Flush()
}

func writeSTUN(w *promWriter, st stunserver.Stats) {
	var msgs []sample
	for _, v := range stunserver.Verdicts() {
		msgs = append(msgs,
			sample{labels: label("transport", "udp") + "," + label("verdict", v.String()), value: float64(st.UDP[v])},
			sample{labels: label("transport", "stream") + "," + label("verdict", v.String()), value: float64(st.Stream[v])})
	}
	w.metric("natkit_stun_messages_total", "counter", "STUN messages received, by transport (udp, stream = tcp and tls) and what the server did with them (drop_rate_limit: an answer withheld by the per-source limit).", msgs)
	one := func(name, typ, help string, v uint64) { w.metric(name, typ, help, []sample{{value: float64(v)}}) }
	one("natkit_stun_udp_batches_total", "counter", "UDP receive system calls that returned datagrams.", st.UDPBatches)
	one("natkit_stun_udp_read_errors_total", "counter", "Failed UDP receive system calls.", st.UDPReadErrors)
	one("natkit_stun_udp_write_errors_total", "counter", "UDP responses the kernel refused.", st.UDPWriteErrors)
	one("natkit_stun_udp_changed_total", "counter", "UDP responses sent from another address or port than the request came to (RFC 5780 CHANGE-REQUEST).", st.UDPChanged)
	one("natkit_stun_udp_response_port_total", "counter", "UDP responses sent to another port of the source (RFC 5780 RESPONSE-PORT).", st.UDPResponsePort)
	one("natkit_stun_connections_accepted_total", "counter", "TCP and TLS connections accepted.", st.ConnsAccepted)
	one("natkit_stun_connections_rejected_total", "counter", "Connections closed at once because the connection limit was reached.", st.ConnsRejected)
	one("natkit_stun_connections_idle_closed_total", "counter", "Connections closed by the idle timeout.", st.ConnsIdle)
	one("natkit_stun_connections_bad_closed_total", "counter", "Connections closed for bad framing or a failed TLS handshake.", st.ConnsBad)
	one("natkit_stun_connections_open", "gauge", "Open TCP and TLS connections.", st.ConnsOpen)
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
