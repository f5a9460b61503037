package interoptest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/natkit/natkit/pkg/media/resample"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/media/wav"
)

// BaresipModules is where Debian's baresip-core keeps its modules.
const BaresipModules = "/usr/lib/baresip/modules"

// BaresipConfig says how to run one headless baresip.
type BaresipConfig struct {
	// Registrar is the PBX's UDP address; User and Password the account
	// (registered with digest; incoming calls are answered at once).
	Registrar netip.AddrPort
	User      string
	Password  string
	// Source is the audio baresip sends in its calls (8 kHz). It plays
	// once: at its end baresip hangs up, so make it outlast the call.
	Source []int16
	// SourceRate is the rate of the file baresip reads Source from: its
	// aufile source takes only the codec's rate (16000 for G.722, 48000
	// for L16/48000); 0 is 8000. Source is resampled to it.
	SourceRate int
	// RTPPorts is baresip's RTP port range; zero: a range from 50000-59999
	// picked by the test process's PID.
	RTPPorts [2]int
	// AnswerMode is baresip's answermode: "" is auto (answer at once),
	// "manual" lets incoming calls ring.
	AnswerMode string
	// Codecs is the account's audio_codecs, baresip's names with an
	// optional rate and channels ("g722", "l16/48000/1"); "" is
	// "pcmu,pcma". The g722 and l16 modules are loaded when named.
	Codecs string
}

// Baresip is a running baresip, driven over its ctrl_tcp socket by one
// goroutine at a time.
type Baresip struct {
	*Proc
	// Dir is its configuration directory; RecordDir where the sndfile
	// module writes each call's audio (see Recordings).
	Dir, RecordDir string
	// SIPPort is the UDP and TCP port of its SIP listener.
	SIPPort int

	conn      net.Conn
	responses chan BaresipResponse
	mu        sync.Mutex
	events    []BaresipEvent
	taken     map[string]int // per event type, how many WaitEvent returned
	changed   chan struct{}  // closed and replaced when an event arrives
	readErr   error
	token     int
}

// BaresipEvent is an event baresip's ctrl_tcp module sent
// ({"event":true,"class":"call","type":"CALL_ESTABLISHED",...}).
type BaresipEvent struct {
	Class   string `json:"class"`
	Type    string `json:"type"`
	Param   string `json:"param"`
	AOR     string `json:"accountaor"`
	PeerURI string `json:"peeruri"`
	ID      string `json:"id"`
}

// BaresipResponse is ctrl_tcp's answer to a command.
type BaresipResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// StartBaresip starts baresip (path from Tool) with a configuration of its
// own in a temporary directory: SIP and ctrl_tcp on free loopback ports
// (new ones when another process took one first), G.711 only unless
// cfg.Codecs says otherwise, audio from
// cfg.Source, received audio recorded by sndfile, RTP statistics printed
// at each call's end. It waits until baresip registered cfg.User at the
// registrar. The test's cleanup kills it if it still runs.
func StartBaresip(t testing.TB, ctx context.Context, path string, cfg BaresipConfig) *Baresip {
	t.Helper()
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	if err := os.Mkdir(rec, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "source.wav")
	writeWAVAt(t, src, cfg.Source, cfg.SourceRate)
	mode := cfg.AnswerMode
	if mode == "" {
		mode = "auto"
	}
	codecs := cfg.Codecs
	if codecs == "" {
		codecs = "pcmu,pcma"
	}
	var modules []string
	for _, m := range []string{"g722", "l16"} {
		if strings.Contains(strings.ToLower(codecs), m) {
			modules = append(modules, m+".so")
		}
	}
	acct := fmt.Sprintf("<sip:%s@%s>;auth_pass=%s;answermode=%s;regint=600;audio_codecs=%s\n",
		cfg.User, cfg.Registrar, cfg.Password, mode, codecs)
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(acct), 0o600); err != nil {
		t.Fatal(err)
	}
	rtp := cfg.RTPPorts
	if rtp[0] == 0 {
		rtp[0] = 50000 + os.Getpid()%100*100
		rtp[1] = rtp[0] + 99
	}
	for attempt := 1; ; attempt++ {
		// SIP takes its port for UDP and TCP, and the next one for TLS.
		sip, ctrl := freeSIPPort(t), FreeUDPPorts(t, 1)[0]
		conf := baresipConfig(sip, ctrl, rtp, src, rec, modules...)
		if err := os.WriteFile(filepath.Join(dir, "config"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		b := &Baresip{Dir: dir, RecordDir: rec, SIPPort: sip, responses: make(chan BaresipResponse, 16),
			taken: map[string]int{}, changed: make(chan struct{})}
		b.Proc = Start(t, dir, path, "-f", dir)
		err := b.connect(ctx, ctrl)
		if err != nil {
			if attempt < 5 && inUse(b.Proc) {
				continue // a port was taken: try new ones
			}
			t.Fatalf("baresip: %v\n%s", err, b.Output())
		}
		t.Cleanup(func() { b.conn.Close() })
		if err := b.waitRegistered(ctx); err != nil {
			t.Fatalf("baresip did not register %s at %s: %v\n%s", cfg.User, cfg.Registrar, err, b.Output())
		}
		return b
	}
}

// waitRegistered asks baresip for its registration until it is OK: it
// registered before the control connection, so no event tells.
func (b *Baresip) waitRegistered(ctx context.Context) error {
	for {
		info, err := b.Command(ctx, "reginfo", "")
		if err != nil {
			return err
		}
		switch info = ansi.ReplaceAllString(info, ""); {
		case strings.Contains(info, " OK "):
			return nil
		case strings.Contains(info, " ERR "):
			return fmt.Errorf("registration failed: %s", strings.TrimSpace(info))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), strings.TrimSpace(info))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ansi matches the colour escapes of baresip's output.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// baresipConfig is a configuration that loads only what the tests need
// and keeps every address on loopback.
func baresipConfig(sip, ctrl int, rtp [2]int, source, rec string, modules ...string) string {
	extra := ""
	for _, m := range modules {
		extra += "module\t\t\t" + m + "\n"
	}
	return fmt.Sprintf(`poll_method		epoll
sip_listen		127.0.0.1:%d
net_interface		127.0.0.1
rtp_ports		%d-%d
rtp_stats		yes
audio_source		aufile,%s
audio_player		aubridge,natkit
audio_alert		aubridge,natkit-alert
module_path		%s
module			g711.so
%smodule			aufile.so
module			aubridge.so
module			sndfile.so
snd_path		%s
module_app		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:%d
`, sip, rtp[0], rtp[1], source, BaresipModules, extra, rec, ctrl)
}

// freeSIPPort returns a loopback port free a moment ago for UDP and TCP,
// with the next one free for TCP.
func freeSIPPort(t testing.TB) int {
	t.Helper()
	for {
		p := FreeUDPPorts(t, 1)[0]
		if p >= 65535 {
			continue
		}
		ok := true
		for _, n := range []struct {
			network string
			port    int
		}{{"tcp", p}, {"tcp", p + 1}} {
			l, err := net.Listen(n.network, fmt.Sprintf("127.0.0.1:%d", n.port))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
}

func writeWAV(t testing.TB, path string, samples []int16) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := wav.Write(f, samples); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// writeWAVAt writes 8 kHz samples as a 16-bit mono WAV file at rate (0:
// 8000), resampled; package wav writes only 8 kHz.
func writeWAVAt(t testing.TB, path string, samples []int16, rate int) {
	t.Helper()
	if rate == 0 || rate == wav.SampleRate {
		writeWAV(t, path, samples)
		return
	}
	up, err := resample.Samples(samples, wav.SampleRate, rate)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 44, 44+2*len(up))
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*len(up)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*len(up)))
	for _, v := range up {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// connect connects to ctrl_tcp once baresip is ready, and starts reading
// its messages. Until then a port in use ends baresip (SIP) or is only
// reported (ctrl_tcp, whose port another program may then hold): both are
// errors for which inUse is true.
func (b *Baresip) connect(ctx context.Context, port int) error {
	for !strings.Contains(b.Output(), "baresip is ready.") {
		select {
		case <-b.Exited():
			return fmt.Errorf("exited before it was ready: %v", b.Err())
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if strings.Contains(b.Output(), "ctrl_tcp: failed") {
		b.cmd.Process.Kill()
		<-b.Exited()
		return errors.New("ctrl_tcp failed to listen")
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return err
	}
	b.conn = c
	go b.read(bufio.NewReader(c))
	return nil
}

// read reads ctrl_tcp's netstrings: responses go to b.responses, events
// to b.events.
func (b *Baresip) read(r *bufio.Reader) {
	var err error
	for {
		var msg []byte
		if msg, err = readNetstring(r); err != nil {
			break
		}
		var m struct {
			Event    bool `json:"event"`
			Response bool `json:"response"`
		}
		if err = json.Unmarshal(msg, &m); err != nil {
			break
		}
		switch {
		case m.Response:
			var res BaresipResponse
			json.Unmarshal(msg, &res)
			b.responses <- res
		case m.Event:
			var ev BaresipEvent
			json.Unmarshal(msg, &ev)
			b.mu.Lock()
			b.events = append(b.events, ev)
			close(b.changed)
			b.changed = make(chan struct{})
			b.mu.Unlock()
		}
	}
	b.mu.Lock()
	b.readErr = err
	close(b.changed)
	b.mu.Unlock()
	close(b.responses)
}

// readNetstring reads one netstring, "LEN:DATA,".
func readNetstring(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(head[:len(head)-1])
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("ctrl_tcp: bad netstring length %q", head)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errors.New("ctrl_tcp: netstring without its comma")
	}
	return buf[:n], nil
}

// Command runs a ctrl_tcp command (a menu command: dial, hangup, quit,
// uareg...) and returns its response's data; a response that is not ok is
// an error.
func (b *Baresip) Command(ctx context.Context, command, params string) (string, error) {
	b.token++
	tok := strconv.Itoa(b.token)
	msg, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	if _, err := fmt.Fprintf(b.conn, "%d:%s,", len(msg), msg); err != nil {
		return "", err
	}
	for {
		select {
		case res, ok := <-b.responses:
			if !ok {
				return "", fmt.Errorf("ctrl_tcp closed before answering %s", command)
			}
			if res.Token != tok {
				continue // the answer to an earlier command that timed out
			}
			if !res.OK {
				return res.Data, fmt.Errorf("%s %s: %s", command, params, res.Data)
			}
			return res.Data, nil
		case <-ctx.Done():
			return "", fmt.Errorf("no answer to %s: %w", command, ctx.Err())
		}
	}
}

// WaitEvent returns the next event of one of types that no earlier
// WaitEvent returned, waiting for it.
func (b *Baresip) WaitEvent(ctx context.Context, types ...string) (BaresipEvent, error) {
	for {
		b.mu.Lock()
		for _, typ := range types {
			seen := 0
			for _, ev := range b.events {
				if ev.Type != typ {
					continue
				}
				if seen == b.taken[typ] {
					b.taken[typ]++
					b.mu.Unlock()
					return ev, nil
				}
				seen++
			}
		}
		changed, err := b.changed, b.readErr
		b.mu.Unlock()
		if err != nil {
			return BaresipEvent{}, fmt.Errorf("no %s event: ctrl_tcp: %v", strings.Join(types, " or "), err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return BaresipEvent{}, fmt.Errorf("no %s event: %w", strings.Join(types, " or "), ctx.Err())
		}
	}
}

// Quit asks baresip to quit and waits until it exited.
func (b *Baresip) Quit(ctx context.Context) error {
	b.Command(ctx, "quit", "") // it may exit before answering
	return b.Wait(ctx)
}

// Recordings returns the WAV files sndfile wrote: per call, dec is the
// audio baresip received (decoded), enc what it sent.
func (b *Baresip) Recordings() (dec, enc []string) {
	ents, _ := os.ReadDir(b.RecordDir)
	for _, e := range ents {
		switch p := filepath.Join(b.RecordDir, e.Name()); {
		case strings.HasSuffix(e.Name(), "-dec.wav"):
			dec = append(dec, p)
		case strings.HasSuffix(e.Name(), "-enc.wav"):
			enc = append(enc, p)
		}
	}
	sort.Strings(dec)
	sort.Strings(enc)
	return dec, enc
}

// RTPStats are the figures of one stream that baresip prints when a call
// ends, with rtp_stats yes.
type RTPStats struct {
	TxPackets, RxPackets int
	TxErrors, RxErrors   int
	// Reported is whether RTCP reports came (then TxLost, RxLost are
	// known: the far end's count, baresip's own).
	Reported       bool
	TxLost, RxLost int
}

var rtpStatsLine = regexp.MustCompile(`(?m)^(packets|errors|lost):\s+(-?\d+)\s+(-?\d+)`)

// RTPStats returns the statistics baresip printed so far, one per stream
// ended.
func (b *Baresip) RTPStats() []RTPStats {
	var out []RTPStats
	for _, m := range rtpStatsLine.FindAllStringSubmatch(b.Output(), -1) {
		tx, _ := strconv.Atoi(m[2])
		rx, _ := strconv.Atoi(m[3])
		if m[1] == "packets" {
			out = append(out, RTPStats{TxPackets: tx, RxPackets: rx})
			continue
		}
		if len(out) == 0 {
			continue
		}
		switch st := &out[len(out)-1]; m[1] {
		case "errors":
			st.TxErrors, st.RxErrors = tx, rx
		case "lost":
			st.Reported, st.TxLost, st.RxLost = true, tx, rx
		}
	}
	return out
}
