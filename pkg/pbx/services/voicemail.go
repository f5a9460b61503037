package services

import (
	"context"
	"crypto/subtle"
	"embed"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/media/rtpsession"
	"github.com/natkit/natkit/pkg/media/tones"
	"github.com/natkit/natkit/pkg/pbx/voicemail"
)

// Voicemail (4000) — see doc.go for the caller's view.
//
// How the PBX hands a call over: when a call to a registered user is not
// answered within its voicemail ring time, is refused busy (486, 600) or
// the user has no live binding, the proxy forks the same INVITE (same
// Call-ID, From, offer) to this server with the Request-URI
// sip:4000@SERVICES;box=USER;vm=REASON. The box parameter is set only by
// the proxy: the Request-URI of a branch to a built-in number is the
// number's fixed contact, so that a caller's own parameters never reach
// here. The identity of a direct caller, for listening, is the
// P-Asserted-Identity the proxy puts on requests it authenticated (RFC
// 3325; the proxy drops any the caller sent).

// The URI parameters of a hand-over.
const (
	BoxParam    = "box"
	ReasonParam = "vm"
)

//go:embed prompts/vm-*.wav
var vmPromptFS embed.FS

// vmPrompts are voicemail's prompts, decoded.
type vmPrompts struct {
	greeting, welcome, box, badPIN, refused, youHave, messages, menu, deleted, goodbye []int16
	digits                                                                             [10][]int16
}

func loadVMPrompts() (*vmPrompts, error) {
	p := &vmPrompts{}
	load := func(name string, dst *[]int16) error {
		b, err := vmPromptFS.ReadFile("prompts/" + name + ".wav")
		if err != nil {
			return fmt.Errorf("services: %s prompt: %w", name, err)
		}
		*dst, err = decodePrompt(name, b)
		return err
	}
	for name, dst := range map[string]*[]int16{
		"vm-greeting": &p.greeting, "vm-welcome": &p.welcome, "vm-box": &p.box, "vm-bad-pin": &p.badPIN,
		"vm-refused": &p.refused, "vm-you-have": &p.youHave, "vm-messages": &p.messages, "vm-menu": &p.menu,
		"vm-deleted": &p.deleted, "vm-goodbye": &p.goodbye,
	} {
		if err := load(name, dst); err != nil {
			return nil, err
		}
	}
	for d := range p.digits {
		if err := load(fmt.Sprintf("vm-digit-%d", d), &p.digits[d]); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// beep is the record tone: 1 kHz, 400 ms.
var beep = sync.OnceValue(func() []int16 {
	return append(tones.Tone(1000, -12, 400*time.Millisecond), tones.Silence(100*time.Millisecond)...)
})

// vmTries bounds the PIN and box entries, and the menu's replays.
const vmTries = 3

// maxEntry bounds a DTMF entry (PIN, box number).
const maxEntry = 32

// Entry is what a caller keyed at a voicemail prompt.
type Entry struct {
	Star   bool   // '*' first: leave a message (at the welcome prompt)
	Digits string // the digits before '#'
}

// ParseEntry reads a DTMF entry as collected (the digits in the order
// received, ending with '#' or, at once, '*'): "1234#" is the digits
// 1234, "*" a star, "#" an empty entry. ok is false for anything else:
// no terminator, a letter, '*' after digits, too long.
func ParseEntry(keys string) (e Entry, ok bool) {
	if keys == "*" {
		return Entry{Star: true}, true
	}
	body, found := strings.CutSuffix(keys, "#")
	if !found || len(body) > maxEntry {
		return Entry{}, false
	}
	for _, r := range body {
		if r < '0' || r > '9' {
			return Entry{}, false
		}
	}
	return Entry{Digits: body}, true
}

// collect reads keys until '#' (or a '*' first, when star is true), a
// pause of IVRTimeout, or maxEntry keys; the keys as received.
func (c *call) collect(ctx context.Context, star bool) (string, bool) {
	var b strings.Builder
	t := time.NewTimer(c.s.cfg.IVRTimeout)
	defer t.Stop()
	for b.Len() <= maxEntry {
		select {
		case d := <-c.digits:
			b.WriteRune(d)
			if d == '#' || d == '*' && star && b.Len() == 1 {
				return b.String(), true
			}
			t.Reset(c.s.cfg.IVRTimeout)
		case <-t.C:
			return b.String(), b.Len() > 0
		case <-ctx.Done():
			return "", false
		}
	}
	return b.String(), true
}

// drain drops the digits received so far.
func (c *call) drain() {
	for {
		select {
		case <-c.digits:
		default:
			return
		}
	}
}

// playCut plays samples, cut short by a digit (which is returned).
func (c *call) playCut(ctx context.Context, s *rtpsession.Session, p *pacer, samples []int16) (rune, bool, error) {
	n := s.FrameSamples()
	frame := make([]int16, n)
	for i := 0; i < len(samples); i += n {
		select {
		case d := <-c.digits:
			return d, true, nil
		default:
		}
		if err := p.wait(ctx); err != nil {
			return 0, false, err
		}
		clear(frame)
		copy(frame, samples[i:])
		if err := s.WriteFrame(frame); err != nil {
			return 0, false, err
		}
	}
	return 0, false, nil
}

// recorder takes the caller's audio while a message is recorded.
type recorder struct {
	mu  sync.Mutex
	rec *voicemail.Recording
	err error
}

func (r *recorder) write(samples []int16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec != nil && r.err == nil && len(samples) > 0 {
		r.err = r.rec.Write(samples)
	}
}

func (r *recorder) set(rec *voicemail.Recording) (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec, err = rec, r.err
	r.err = nil
	return err
}

// minMessage is the shortest message kept: a caller who hangs up at the
// beep leaves none.
const minMessage = time.Second

// voicemail is 4000: a hand-over (box=) records a message for the box; a
// direct call asks for the PIN of the caller's box, or '*' and a box
// number to leave a message.
func (c *call) voicemail() {
	var inband *dtmf.Detector
	if c.eventPT == 0 {
		inband = &dtmf.Detector{}
	}
	c.withSession(func(f rtpsession.Frame) {
		c.rec.write(f.Samples)
		if inband != nil {
			for _, d := range inband.Write(f.Samples) {
				c.digit(d)
			}
		}
	}, func(ctx context.Context, s *rtpsession.Session, p *pacer) {
		c.watch(func(ctx context.Context) {
			if box := handoverBox(c.req); box != "" {
				if c.s.vm.prompts != nil && p.play(ctx, s, c.s.vm.prompts.greeting) != nil {
					return
				}
				c.leaveMessage(ctx, s, p, box)
				return
			}
			c.voicemailMenu(ctx, s, p)
		})
	})
}

// handoverBox is the box a hand-over from the proxy names.
func handoverBox(req *sip.Request) string {
	if req.Recipient.UriParams == nil {
		return ""
	}
	box, _ := req.Recipient.UriParams.Get(BoxParam)
	if !voicemail.ValidBox(box) {
		return ""
	}
	return box
}

// assertedUser is the user of the P-Asserted-Identity the proxy set.
func assertedUser(req *sip.Request) string {
	h := req.GetHeader("P-Asserted-Identity")
	if h == nil {
		return ""
	}
	var u sip.Uri
	var params sip.HeaderParams
	if _, err := sip.ParseAddressValue(h.Value(), &u, &params); err != nil {
		return ""
	}
	return u.User
}

// leaveMessage plays the beep and records until the caller hangs up,
// presses '#', or VoicemailMax; then stores the message. The recording is
// the audio frames as they arrive: a lost packet or a silence the phone
// did not send (DTX) is not filled in, so the message is that much
// shorter.
func (c *call) leaveMessage(ctx context.Context, s *rtpsession.Session, p *pacer, box string) {
	if p.play(ctx, s, beep()) != nil {
		return
	}
	c.drain()
	rec, err := c.s.vm.store.Record(box)
	if err != nil {
		c.s.log.Warn("voicemail: record", "box", box, "error", err)
		return
	}
	c.rec.set(rec)
	c.s.st.vmRecording.Add(1)
	max := time.NewTimer(c.s.cfg.VoicemailMax)
	defer max.Stop()
	// Silence goes out meanwhile, so that the caller's RTP path stays open.
	silence := make([]int16, s.FrameSamples())
wait:
	for {
		select {
		case d := <-c.digits:
			if d == '#' {
				break wait
			}
		case <-max.C:
			break wait
		case <-ctx.Done():
			break wait
		default:
			if p.wait(ctx) == nil {
				_ = s.WriteFrame(silence)
			}
		}
	}
	c.s.st.vmRecording.Add(-1)
	werr := c.rec.set(nil)
	if werr != nil || rec.Samples() < int64(minMessage*8000/time.Second) {
		rec.Abort()
		if werr != nil {
			c.s.log.Warn("voicemail: record", "box", box, "error", werr)
		}
		return
	}
	caller := ""
	if f := c.req.From(); f != nil {
		caller = f.Address.Addr()
	}
	m, err := rec.Commit(caller)
	if err != nil {
		c.s.log.Warn("voicemail: store", "box", box, "error", err)
		return
	}
	c.s.st.vmMessages.Add(1)
	c.s.log.Info("voicemail: message", "box", box, "call_id", callID(c.req), "duration_ms", m.DurationMS)
}

// voicemailMenu is a direct call: PIN (or '*' and a box number to leave a
// message), then the caller's messages.
func (c *call) voicemailMenu(ctx context.Context, s *rtpsession.Session, p *pacer) {
	pr := c.s.vm.prompts
	owner := assertedUser(c.req)
	for range vmTries {
		d, cut, err := c.playCut(ctx, s, p, pr.welcome)
		if err != nil {
			return
		}
		if cut {
			select {
			case c.digits <- d: // the first key of the entry
			default:
			}
		}
		keys, ok := c.collect(ctx, true)
		if ctx.Err() != nil {
			return
		}
		e, ok := ParseEntry(keys)
		if !ok {
			continue
		}
		if e.Star {
			c.chooseBox(ctx, s, p)
			return
		}
		switch c.checkPIN(owner, e.Digits) {
		case pinOK:
			c.listen(ctx, s, p, owner)
			return
		case pinRefused:
			c.s.st.vmRefused.Add(1)
			p.play(ctx, s, pr.refused)
			return
		default:
			c.s.st.vmBadPIN.Add(1)
			if p.play(ctx, s, pr.badPIN) != nil {
				return
			}
		}
	}
}

type pinResult int

const (
	pinOK pinResult = iota
	pinWrong
	pinRefused
)

// checkPIN applies the listening rule: only the caller's own box (the
// identity the proxy authenticated), after its PIN when it has one.
func (c *call) checkPIN(owner, pin string) pinResult {
	if owner == "" || !voicemail.ValidBox(owner) || !c.s.boxExists(owner) {
		return pinRefused
	}
	want, ok := c.s.cfg.VoicemailPINs[owner]
	if !ok {
		return pinOK // digest authentication as the owner suffices
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(pin)) != 1 {
		return pinWrong
	}
	return pinOK
}

// boxExists reports whether user has a box (Config.VoicemailBox).
func (s *Server) boxExists(user string) bool {
	if s.cfg.VoicemailBox == nil {
		return voicemail.ValidBox(user)
	}
	return s.cfg.VoicemailBox(user)
}

// chooseBox asks for a box number and leaves a message there.
func (c *call) chooseBox(ctx context.Context, s *rtpsession.Session, p *pacer) {
	for range vmTries {
		if p.play(ctx, s, c.s.vm.prompts.box) != nil {
			return
		}
		keys, _ := c.collect(ctx, false)
		if ctx.Err() != nil {
			return
		}
		if e, ok := ParseEntry(keys); ok && e.Digits != "" && c.s.boxExists(e.Digits) {
			c.leaveMessage(ctx, s, p, e.Digits)
			return
		}
		if p.play(ctx, s, c.s.ivrInvalid) != nil {
			return
		}
	}
}

// sayNumber plays n digit by digit.
func (c *call) sayNumber(ctx context.Context, s *rtpsession.Session, p *pacer, n int) error {
	for _, r := range fmt.Sprint(n) {
		if err := p.play(ctx, s, c.s.vm.prompts.digits[r-'0']); err != nil {
			return err
		}
	}
	return nil
}

// listen plays the count, then each message and the menu after it: 1
// again, 7 delete, 6 (or 2, or #) the next; no key within IVRTimeout plays
// the menu again (vmTries times, then the next message).
func (c *call) listen(ctx context.Context, s *rtpsession.Session, p *pacer, box string) {
	pr := c.s.vm.prompts
	st := c.s.vm.store
	ms, err := st.List(box)
	if err != nil {
		c.s.log.Warn("voicemail: list", "box", box, "error", err)
	}
	c.s.st.vmListens.Add(1)
	if p.play(ctx, s, pr.youHave) != nil || c.sayNumber(ctx, s, p, len(ms)) != nil || p.play(ctx, s, pr.messages) != nil {
		return
	}
	c.drain()
messages:
	for _, m := range ms {
		audio, err := st.Load(box, m.ID)
		if err != nil {
			continue
		}
	again:
		if p.play(ctx, s, tones.Silence(300*time.Millisecond)) != nil {
			return
		}
		d, cut, err := c.playCut(ctx, s, p, audio)
		if err != nil {
			return
		}
		if err := st.MarkHeard(box, m); err == nil {
			m.Heard = true
		}
		for range vmTries {
			if !cut {
				d, cut, err = c.playCut(ctx, s, p, pr.menu)
				if err != nil {
					return
				}
			}
			if !cut {
				t := time.NewTimer(c.s.cfg.IVRTimeout)
				select {
				case d, cut = <-c.digits:
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
				t.Stop()
			}
			if !cut {
				continue // no key: the menu again
			}
			cut = false
			switch d {
			case '1':
				goto again
			case '7':
				if err := st.Delete(box, m.ID); err != nil {
					c.s.log.Warn("voicemail: delete", "box", box, "error", err)
				}
				if p.play(ctx, s, pr.deleted) != nil {
					return
				}
				continue messages
			case '6', '2', '#':
				continue messages
			}
		}
	}
	p.play(ctx, s, pr.goodbye)
}

// vmState is the server's voicemail, when configured.
type vmState struct {
	store   *voicemail.Store
	prompts *vmPrompts
}
