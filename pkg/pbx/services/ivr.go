package services

import (
	"context"
	"github.com/natkit/natkit/pkg/media/tones"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/media/mixer"
	"github.com/natkit/natkit/pkg/media/rtpsession"
)

// ivrTries is how many times 5000 plays its menu without a valid choice
// before it hangs up (FreeSWITCH's demo IVR: max-failures 3).
const ivrTries = 3

// ivr is 5000: the menu prompt, then a DTMF digit (RFC 4733, SIP INFO, or
// in-band tones when no telephone-event was negotiated; a digit during the
// prompt cuts it short) chooses a number of the menu
// (Config.IVRMenu), whose service then runs on this same call: the echo
// tests, music on hold and the conference rooms. A digit outside the menu,
// or voicemail (4000) when it is off (Config.Voicemail), says "That
// option is not available" and plays the menu again; so does
// no digit within IVRTimeout. After ivrTries failures it hangs up.
func (c *call) ivr() {
	var sess atomic.Pointer[rtpsession.Session]
	var echo atomic.Pointer[delayLine]         // set once the caller chose an echo
	var conf atomic.Pointer[mixer.Participant] // set while in a conference
	// A phone that negotiated no telephone-event may send neither events
	// nor INFO: its tones are heard in the audio (Goertzel).
	var inband *dtmf.Detector
	if c.eventPT == 0 {
		inband = &dtmf.Detector{}
	}
	c.withSession(func(f rtpsession.Frame) {
		c.rec.write(f.Samples)
		if p := conf.Load(); p != nil && len(f.Samples) > 0 {
			p.Write(f.Samples)
		}
		l, s := echo.Load(), sess.Load()
		if l != nil && s != nil && len(f.Samples) > 0 {
			_ = s.WriteFrame(l.push(f.Samples))
			return
		}
		if inband != nil {
			for _, d := range inband.Write(f.Samples) {
				c.digit(d)
			}
		}
	}, func(ctx context.Context, s *rtpsession.Session, p *pacer) {
		sess.Store(s)
		c.watch(func(ctx context.Context) {
			for range ivrTries {
				d, ok := c.menu(ctx, s, p)
				if ctx.Err() != nil {
					return
				}
				if !ok {
					continue // no digit: the menu again
				}
				switch svc := c.s.cfg.Numbers[c.s.cfg.IVRMenu[d]]; svc {
				case Echo, EchoDelayed:
					c.s.st.ivrChoices.Add(1)
					delay := 0
					if svc == EchoDelayed {
						delay = int(c.s.cfg.EchoDelay * tones.Rate / time.Second) // the IVR session is 8 kHz
					}
					echo.Store(newDelayLine(delay, 0))
					<-ctx.Done()
					return
				case Conference:
					c.s.st.ivrChoices.Add(1)
					c.joinRoom(ctx, s, c.s.cfg.IVRMenu[d], &conf)
					return
				case Music:
					c.s.st.ivrChoices.Add(1)
					for p.play(ctx, s, musicLoop()) == nil {
					}
					return
				case Voicemail:
					if c.s.vm.store == nil {
						c.s.st.ivrInvalid.Add(1)
						if p.play(ctx, s, c.s.ivrInvalid) != nil {
							return
						}
						continue
					}
					c.s.st.ivrChoices.Add(1)
					c.voicemailMenu(ctx, s, p)
					return
				default:
					c.s.st.ivrInvalid.Add(1)
					if p.play(ctx, s, c.s.ivrInvalid) != nil {
						return
					}
				}
			}
		})
	})
}

// menu plays the menu, cut short by a digit, then waits IVRTimeout for
// one; ok is false when none came.
func (c *call) menu(ctx context.Context, s *rtpsession.Session, p *pacer) (rune, bool) {
	n := s.FrameSamples()
	frame := make([]int16, n)
	for i := 0; i < len(c.s.ivrMenu); i += n {
		select {
		case d := <-c.digits:
			return d, true
		default:
		}
		if p.wait(ctx) != nil {
			return 0, false
		}
		clear(frame)
		copy(frame, c.s.ivrMenu[i:])
		if s.WriteFrame(frame) != nil {
			return 0, false
		}
	}
	t := time.NewTimer(c.s.cfg.IVRTimeout)
	defer t.Stop()
	select {
	case d := <-c.digits:
		return d, true
	case <-t.C:
	case <-ctx.Done():
	}
	return 0, false
}
