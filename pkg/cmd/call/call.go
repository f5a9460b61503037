// Package call implements `natkit call`: place one SIP call (or answer
// calls with --answer) and report the ladder, timings and media figures.
package call

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/natkit/natkit/pkg/media/codec"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/endpoint"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/media/wav"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/sdp"
	engine "github.com/natkit/natkit/pkg/sipua"
)

// PasswordEnv holds the SIP password when --password is not given.
const PasswordEnv = "NATKIT_SIP_PASSWORD"

// setupBudget is added to --duration for the default timeout: registration,
// a call that rings for a while, and the BYE.
const setupBudget = 30 * time.Second

// maxDuration bounds --duration.
const maxDuration = time.Hour

// answerCodecs is --answer's preference when --codec is not given: every
// codec natkit speaks, wideband first (codec.All), so that it answers the
// best codec a caller has. Calls offer G.711 unless told (--codec).
var answerCodecs = func() string {
	names := map[string]string{"G722/8000": "g722", "PCMU/8000": "pcmu", "PCMA/8000": "pcma"}
	var out []string
	for _, c := range codec.All {
		n, ok := names[c.String()]
		if !ok {
			n = strings.ToLower(c.String())
		}
		out = append(out, n)
	}
	return strings.Join(out, ",")
}()

// CallOptions are the command's dependencies, flag values and test seams.
type CallOptions struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	Logger      func() *slog.Logger
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	Target     string
	User       string
	Password   string
	NoRegister bool
	Proxy      string
	Transport  string
	Duration   time.Duration
	Codec      string
	Play       string
	Record     string
	DTMF       string
	Local      string
	IPv4       bool
	IPv6       bool
	Answer     string
	Count      int
	Insecure   bool
	CAFile     string
	ice        iceFlags

	// Run places a call (engine.Run); AnswerCalls answers (engine.Answer).
	Run         func(context.Context, engine.Options) (engine.Report, error)
	AnswerCalls func(context.Context, engine.AnswerOptions) (engine.AnswerReport, error)
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string

	// Parsed by validate.
	target    engine.Target
	aor       engine.Target
	transport engine.Transport
	codecs    []sdp.Codec
	play      []int16
	local     netip.AddrPort
}

// NewCmdCall returns the call command. runF replaces the run function in
// tests.
func NewCmdCall(f *cmdutil.Factory, runF func(*CallOptions) error) *cobra.Command {
	opts := &CallOptions{
		IO: f.IOStreams, Globals: f.Globals, Logger: f.Logger, WithTimeout: f.WithTimeout,
		Run: engine.Run, AnswerCalls: engine.Answer, Getenv: os.Getenv,
	}
	cmd := &cobra.Command{
		Use:   "call TARGET | --answer AOR",
		Short: "Place a SIP call (or answer calls) and measure it",
		Long: `Place one SIP call and measure it: the message ladder, setup and ringing times,
and the audio both ways (packets, loss, jitter, RTT from RTCP, a MOS estimate,
and the echo delay when the far end echoes, e.g. an echo-test extension).

TARGET is a SIP URI (sip:9195@pbx.example.net, sips:alice@example.net) or
EXT@HOST[:PORT]; the default port is 5060 (5061 for TLS). With --user it
REGISTERs first (digest MD5 or SHA-256), unless --no-register; the password
comes from --password or $NATKIT_SIP_PASSWORD. After the answer natkit sends a
probe chirp and a test tone (or --play FILE.wav) for --duration, then BYE; a
call still ringing at --timeout is cancelled.

With --answer AOR natkit registers AOR (EXT@HOST[:PORT]) and answers incoming
calls, echoing their audio (or playing --play), until --count calls ended or
--timeout.

With --ice (both ends natkit, or any ICE phone) the offer carries ICE
candidates (RFC 8839): host, server-reflexive from --stun (default: the SIP
server's host on 3478, where natkit serve answers STUN) and relayed from
--relay turn:USER@HOST (password in the URI or $NATKIT_TURN_PASSWORD). Media
then goes direct when the NATs let the checks through, else through TURN,
and natkit's PBX does not anchor it; media.path in the report says which
(direct, relay, or plain without ICE). --answer answers ICE offers with ICE.
With --ice the call (with --answer, the registration) goes over TCP unless
--transport or the URI says otherwise: an INVITE with candidates is larger than SIP over UDP allows
(1300 bytes, RFC 3261 §18.1.1).

Exit status: 0 when the call was answered and audio came back, 1 when it was
rejected or failed (or no audio came back), 2 for bad usage.`,
		Example: `  natkit call sip:9195@pbx.example.net --user 1001
  NATKIT_SIP_PASSWORD=secret natkit call 9195@192.0.2.10 --user 1001 --duration 10s --json
  natkit call sip:service@127.0.0.1:5070 --no-register --duration 1s
  natkit call sips:9196@pbx.example.net --user 1001 --codec pcma --dtmf 123,#
  natkit call --answer 1002@pbx.example.net --count 3 --timeout 10m
  NATKIT_TURN_PASSWORD=secret natkit call 1002@pbx.example.net --user 1001 --ice --relay turn:1001@pbx.example.net`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Target = ""
			if len(args) == 1 {
				opts.Target = args[0]
			}
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return callRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.User, "user", "", "account `NAME` (or NAME@DOMAIN) to register and authenticate as")
	fl.StringVar(&opts.Password, "password", "", "SIP password (default $"+PasswordEnv+")")
	fl.BoolVar(&opts.NoRegister, "no-register", false, "do not REGISTER before calling")
	fl.StringVar(&opts.Proxy, "proxy", "", "outbound proxy `ADDR` (HOST[:PORT])")
	fl.StringVar(&opts.Transport, "transport", "", "transport: udp, tcp or tls (default: the URI's, else udp)")
	fl.DurationVar(&opts.Duration, "duration", engine.DefaultDuration, "audio after the answer, then BYE")
	fl.StringVar(&opts.Codec, "codec", "", "codecs in order of preference: pcmu, pcma, g722, l16 (= l16/16000), l16/8000, l16/32000, l16/48000 (default pcmu,pcma; with --answer all, wideband first)")
	fl.StringVar(&opts.Play, "play", "", "send this `FILE.wav` (8 kHz mono) instead of the test signal")
	fl.StringVar(&opts.Record, "record", "", "write the audio received to `FILE.wav`")
	fl.StringVar(&opts.DTMF, "dtmf", "", "send these `DIGITS` after the answer: RFC 4733 events, or SIP INFO when the far end has no telephone-event (',' pauses 500 ms)")
	fl.StringVar(&opts.Local, "local", "", "send from this local `ADDR` (IP or IP:PORT)")
	fl.BoolVarP(&opts.IPv4, "ipv4", "4", false, "use IPv4 only")
	fl.BoolVarP(&opts.IPv6, "ipv6", "6", false, "use IPv6 only")
	fl.StringVar(&opts.Answer, "answer", "", "register `AOR` (EXT@HOST[:PORT]) and answer incoming calls")
	fl.IntVar(&opts.Count, "count", 1, "with --answer: stop after N calls ended")
	fl.BoolVar(&opts.Insecure, "insecure", false, "with TLS, do not verify the server's certificate (test servers only)")
	fl.StringVar(&opts.CAFile, "ca-file", "", "with TLS, trust the PEM certificates in `FILE` instead of the system roots")
	addICEFlags(fl, &opts.ice)
	return cmd
}

// validate checks flags and arguments; every failure is a usage error.
func (o *CallOptions) validate() error {
	var err error
	switch {
	case o.Answer == "" && o.Target == "":
		return cmdutil.UsageErrorf("no TARGET: give the SIP URI or EXT@HOST to call, e.g. natkit call sip:9195@pbx.example.net, or --answer AOR")
	case o.Answer != "" && o.Target != "":
		return cmdutil.UsageErrorf("--answer and a TARGET exclude each other: give one of them")
	case o.Answer != "":
		if o.aor, err = engine.ParseTarget(o.Answer); err != nil {
			return cmdutil.UsageErrorf("--answer: %v", err)
		}
		if o.aor.User == "" {
			return cmdutil.UsageErrorf("--answer %s: the AOR needs a user, e.g. 1002@%s", o.Answer, o.aor.Host)
		}
	default:
		if o.target, err = engine.ParseTarget(o.Target); err != nil {
			return cmdutil.UsageErrorf("%v", err)
		}
		if o.Count != 1 {
			return cmdutil.UsageErrorf("--count goes with --answer: drop it, or answer calls with --answer AOR")
		}
	}
	if o.Count < 1 {
		return cmdutil.UsageErrorf("--count %d: give 1 or more calls", o.Count)
	}
	o.transport = ""
	if o.Transport != "" {
		if o.transport, err = engine.ParseTransport(o.Transport); err != nil {
			return cmdutil.UsageErrorf("--transport %q: use udp, tcp or tls", o.Transport)
		}
		uri := o.target
		if o.Answer != "" {
			uri = o.aor
		}
		if uri.Scheme == "sips" && o.transport != engine.TLS {
			return cmdutil.UsageErrorf("--transport %s contradicts the sips: URI (TLS): drop one of them", o.Transport)
		}
	}
	uri := o.target
	if o.Answer != "" {
		uri = o.aor
	}
	if o.ice.ICE && o.transport == "" && uri.Transport == "" {
		// An INVITE with ICE candidates (and its 200) is larger than 1300
		// bytes: RFC 3261 §18.1.1 sends it over a congestion-controlled
		// transport, and sipgo refuses it over UDP. Say tcp rather than
		// fail by default; with --answer, the registration is over TCP, so
		// that the PBX can bring such an INVITE.
		o.transport = engine.TCP
	}
	if o.Duration <= 0 || o.Duration > maxDuration {
		return cmdutil.UsageErrorf("--duration %v: give a duration from 1ms to %v, e.g. 5s", o.Duration, maxDuration)
	}
	o.codecs = o.codecs[:0]
	list := o.Codec
	switch {
	case list != "":
	case o.Answer != "":
		list = answerCodecs
	default:
		list = "pcmu,pcma"
	}
	for _, name := range strings.Split(list, ",") {
		c, err := codec.Parse(name)
		if err != nil {
			return cmdutil.UsageErrorf("--codec %q: natkit supports %s, e.g. --codec g722,pcmu", name, strings.Join(codec.Names, ", "))
		}
		o.codecs = append(o.codecs, sdp.FromCodec(c))
	}
	for _, d := range strings.ToUpper(o.DTMF) {
		if d != ',' && !strings.ContainsRune(dtmf.Digits, d) {
			return cmdutil.UsageErrorf("--dtmf %q: %q is not a DTMF key; use 0-9 * # A-D, and ',' for a 500 ms pause", o.DTMF, d)
		}
	}
	if o.DTMF != "" && o.Answer != "" {
		return cmdutil.UsageErrorf("--dtmf goes with placing a call, not with --answer")
	}
	if o.IPv4 && o.IPv6 {
		return cmdutil.UsageErrorf("-4 and -6 exclude each other: give one of them, or neither for any family")
	}
	if o.Insecure && o.CAFile != "" {
		return cmdutil.UsageErrorf("--insecure and --ca-file exclude each other: give one of them")
	}
	o.local = netip.AddrPort{}
	if o.Local != "" {
		ap, err := cmdutil.ParseLocal(o.Local)
		if err != nil {
			return cmdutil.UsageErrorf("--local %q: give an IP address or IP:PORT, e.g. 192.0.2.10 or [2001:db8::1]:5060", o.Local)
		}
		if (o.IPv4 && !ap.Addr().Is4()) || (o.IPv6 && ap.Addr().Is4()) {
			return cmdutil.UsageErrorf("--local %s does not match %s: drop one of them", o.Local, map[bool]string{true: "-4", false: "-6"}[o.IPv4])
		}
		o.local = ap
	}
	if o.Proxy != "" {
		if _, err := engine.ParseTarget(o.Proxy); err != nil {
			return cmdutil.UsageErrorf("--proxy: %v", err)
		}
	}
	if o.Password == "" && o.Getenv != nil {
		o.Password = o.Getenv(PasswordEnv)
	}
	registers := !o.NoRegister && (o.User != "" || o.Answer != "")
	if registers && o.Password == "" {
		who := o.User
		if who == "" {
			who = o.Answer
		}
		return cmdutil.UsageErrorf("registering as %s needs a password: give --password or set $%s (or --no-register)", who, PasswordEnv)
	}
	if err := o.ice.validate(o.Answer != "", o.Getenv); err != nil {
		return err
	}
	o.play = nil
	if o.Play != "" {
		f, err := os.Open(o.Play)
		if err != nil {
			return cmdutil.UsageErrorf("--play: %v", err)
		}
		a, err := wav.Read(f)
		f.Close()
		if err != nil {
			return cmdutil.UsageErrorf("--play %s: %v (give an 8 kHz mono WAV: PCM, A-law or µ-law)", o.Play, err)
		}
		if len(a.Samples) == 0 {
			return cmdutil.UsageErrorf("--play %s: the file holds no audio", o.Play)
		}
		o.play = a.Samples
	}
	return nil
}

func (o *CallOptions) tlsConfig() (*tls.Config, error) {
	return cmdutil.ClientTLS(o.Insecure, o.CAFile)
}

func (o *CallOptions) family() endpoint.Family {
	switch {
	case o.IPv4:
		return endpoint.IPv4
	case o.IPv6:
		return endpoint.IPv6
	}
	return endpoint.AnyFamily
}

func callRun(ctx context.Context, o *CallOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	tc, err := o.tlsConfig()
	if err != nil {
		return err
	}
	if o.Answer != "" {
		return answerRun(ctx, o, tc)
	}
	ctx, cancel := o.WithTimeout(ctx, o.Duration+setupBudget)
	defer cancel()
	eo := engine.Options{
		Target: o.target, Transport: o.transport, User: o.User, Password: o.Password,
		Register: o.User != "" && !o.NoRegister, Proxy: o.Proxy, Duration: o.Duration, Codecs: o.codecs,
		Play: o.play, DTMF: strings.ToUpper(o.DTMF), Local: o.local, Family: o.family(), TLSConfig: tc, Logger: o.Logger(),
	}
	if eo.ICE, err = o.ice.config(ctx, false, o.sipHost(o.target), o.family()); err != nil {
		return err
	}
	o.IO.StartProgress(fmt.Sprintf("Calling %s…", o.target))
	rep, err := o.Run(ctx, eo)
	o.IO.StopProgress()
	if err != nil {
		return engineError(o, err)
	}
	if err := o.record(rep.Received); err != nil {
		return err
	}
	if o.Globals.JSON {
		err = render.JSON(o.IO.Out, rep)
	} else {
		err = renderCall(o.IO.Out, o.IO.ColorScheme(), rep.Call, o.Globals.Verbose > 0)
	}
	if err != nil {
		return err
	}
	if !good(rep.Call) {
		return cmdutil.ErrBadResult
	}
	return nil
}

func answerRun(ctx context.Context, o *CallOptions, tc *tls.Config) error {
	ctx, cancel := o.WithTimeout(ctx, 0)
	defer cancel()
	ao := engine.AnswerOptions{
		AOR: o.aor, Transport: o.transport, AuthUser: o.User, Password: o.Password, NoRegister: o.NoRegister,
		Proxy: o.Proxy, Count: o.Count, Codecs: o.codecs, Play: o.play, Local: o.local, Family: o.family(),
		TLSConfig: tc, Logger: o.Logger(),
	}
	var err error
	if ao.ICE, err = o.ice.config(ctx, true, o.sipHost(o.aor), o.family()); err != nil {
		return err
	}
	rep, err := o.AnswerCalls(ctx, ao)
	if err != nil {
		return engineError(o, err)
	}
	var all []int16
	for _, c := range rep.Calls {
		all = append(all, c.Received...)
	}
	if err := o.record(all); err != nil {
		return err
	}
	if o.Globals.JSON {
		err = render.JSON(o.IO.Out, rep)
	} else {
		err = renderAnswer(o.IO.Out, o.IO.ColorScheme(), rep, o.Globals.Verbose > 0)
	}
	if err != nil {
		return err
	}
	ok := len(rep.Calls) >= o.Count
	for _, c := range rep.Calls {
		ok = ok && good(c)
	}
	if !ok {
		return cmdutil.ErrBadResult
	}
	return nil
}

// good is the contract's exit 0: answered, and audio came back.
func good(c engine.Call) bool {
	return c.Answered && c.Media != nil && c.Media.PacketsReceived > 0
}

func engineError(o *CallOptions, err error) error {
	switch {
	case errors.Is(err, engine.ErrBind):
		return cmdutil.UsageErrorf("--local %s: %v", o.Local, err)
	case errors.Is(err, engine.ErrResolve):
		return cmdutil.ResultErrorf("%v: check the name, or give an IP address", err)
	}
	return cmdutil.ResultErrorf("%v", err)
}

// record writes the audio received to --record.
func (o *CallOptions) record(samples []int16) error {
	if o.Record == "" {
		return nil
	}
	f, err := os.Create(o.Record)
	if err != nil {
		return cmdutil.UsageErrorf("--record: %v", err)
	}
	if err := wav.Write(f, samples); err != nil {
		f.Close()
		return cmdutil.ResultErrorf("--record %s: %v", o.Record, err)
	}
	return f.Close()
}
