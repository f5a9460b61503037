package services

import (
	"context"
	"github.com/natkit/natkit/pkg/media/resample"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/natkit/natkit/pkg/media/dtmf"
	"github.com/natkit/natkit/pkg/media/mixer"
	"github.com/natkit/natkit/pkg/media/rtpsession"
	"github.com/natkit/natkit/pkg/media/tones"
)

// Conference rooms: 3000–3399, the room's rate by its hundreds, as
// FreeSWITCH's demo dialplan has them:
//
//	3000–3099   8 kHz (narrowband)
//	3100–3199  16 kHz (wideband)
//	3200–3299  32 kHz (ultra-wideband)
//	3300–3399  48 kHz (fullband)
//
// The service speaks G.711, so its callers are resampled from 8 kHz into
// a wideband room and back; a room at a higher rate matters to the sounds
// mixed in it and to the codecs a later issue adds.
const (
	conferenceFirst = 3000
	conferenceLast  = 3399
)

// muteDigits toggle a participant's mute (RFC 4733, SIP INFO or in-band).
const muteDigits = "*0"

// defaultNumbers is FreeSWITCH's demo numbers with the conference rooms.
func defaultNumbers() map[string]Service {
	m := map[string]Service{
		"9195": EchoDelayed,
		"9196": Echo,
		"9664": Music,
		"9182": EarlyMedia,
		"9178": Fax,
		"9179": Fax,
		"5000": IVR,
		"4000": Voicemail,
	}
	for n := conferenceFirst; n <= conferenceLast; n++ {
		m[strconv.Itoa(n)] = Conference
	}
	return m
}

// ConferenceRate is the mixing rate of the room a number names: by its
// hundreds within 3000–3399, 8 kHz for any other number given Conference.
func ConferenceRate(number string) int {
	n, err := strconv.Atoi(number)
	if err != nil || n < conferenceFirst || n > conferenceLast {
		return mixer.DefaultRate
	}
	return mixer.Rates[(n-conferenceFirst)/100]
}

// The conference's sounds, at 8 kHz: a rising pair of beeps when someone
// joins, a falling pair when someone leaves, a low beep to who mutes and a
// high one to who unmutes.
var (
	joinTone   = beeps(660, 880)
	leaveTone  = beeps(880, 660)
	muteTone   = beeps(400)
	unmuteTone = beeps(1000)
)

func beeps(freqs ...float64) []int16 {
	var out []int16
	for _, f := range freqs {
		out = append(out, tones.Tone(f, -16, 120*time.Millisecond)...)
		out = append(out, tones.Silence(30*time.Millisecond)...)
	}
	return out
}

// sounds are a room rate's sounds, resampled once.
type sounds struct{ hold, join, leave, mute, unmute []int16 }

// conferences are the rooms that have someone in them: a room is made by
// its first participant and closed with its last.
type conferences struct {
	mu     sync.Mutex
	rooms  map[string]*room
	sounds map[int]*sounds
}

type room struct {
	*mixer.Room
	n    int
	done chan struct{}
}

func (cs *conferences) soundsAt(rate int) *sounds {
	if s := cs.sounds[rate]; s != nil {
		return s
	}
	rs := func(in []int16) []int16 {
		out, err := resample.Samples(in, tones.Rate, rate)
		if err != nil {
			panic(err) // every room rate is a multiple of 8 kHz
		}
		return out
	}
	s := &sounds{rs(musicLoop()), rs(joinTone), rs(leaveTone), rs(muteTone), rs(unmuteTone)}
	if cs.sounds == nil {
		cs.sounds = map[int]*sounds{}
	}
	cs.sounds[rate] = s
	return s
}

// join adds a participant to number's room, making it when empty; leave
// takes it out, and closes the room after its last participant.
func (cs *conferences) join(number string, pc mixer.ParticipantConfig) (p *mixer.Participant, snd *sounds, leave func(), err error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	rate := ConferenceRate(number)
	snd = cs.soundsAt(rate)
	r := cs.rooms[number]
	if r == nil {
		mr, err := mixer.New(mixer.Config{Rate: rate, Hold: snd.hold})
		if err != nil {
			return nil, nil, nil, err
		}
		r = &room{Room: mr, done: make(chan struct{})}
		go func() { defer close(r.done); mr.Run(context.Background()) }()
		if cs.rooms == nil {
			cs.rooms = map[string]*room{}
		}
		cs.rooms[number] = r
	}
	p, err = r.Join(pc)
	if err != nil {
		return nil, nil, nil, err
	}
	r.n++
	if r.n > 1 {
		r.Play(snd.join)
	}
	leave = func() {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		p.Leave()
		r.n--
		if r.n > 0 {
			r.Play(snd.leave)
			return
		}
		delete(cs.rooms, number)
		r.Close()
		<-r.done
	}
	return p, snd, leave, nil
}

// Rooms is the number of conference rooms with someone in them.
func (s *Server) Rooms() int {
	s.rooms.mu.Lock()
	defer s.rooms.mu.Unlock()
	return len(s.rooms.rooms)
}

// conference is 3000–3399: the caller joins number's room and hears the
// others (music on hold while alone); * or 0 toggles mute.
func (c *call) conference(number string) {
	var part atomic.Pointer[mixer.Participant]
	var inband *dtmf.Detector
	var narrow *resample.Resampler // the detector's 8 kHz from a wideband codec
	if c.eventPT == 0 {
		inband = &dtmf.Detector{}
		narrow, _ = resample.New(c.codec.SampleRate, tones.Rate) // rates of package codec: never fails
	}
	// At the caller's codec rate: the room resamples to and from its own.
	c.withSessionAt(0, func(f rtpsession.Frame) {
		if p := part.Load(); p != nil && len(f.Samples) > 0 {
			p.SetSource(f.SSRC)
			p.Write(f.Samples)
		}
		if inband != nil {
			for _, d := range inband.Write(narrow.Process(nil, f.Samples)) {
				c.digit(d)
			}
		}
	}, func(ctx context.Context, s *rtpsession.Session, _ *pacer) {
		c.watch(func(ctx context.Context) { c.joinRoom(ctx, s, number, &part) })
	})
}

// joinRoom is the caller in the room until ctx ends; the room's ticker
// sends what it hears, a frame each 20 ms.
func (c *call) joinRoom(ctx context.Context, s *rtpsession.Session, number string, part *atomic.Pointer[mixer.Participant]) {
	p, snd, leave, err := c.s.rooms.join(number, mixer.ParticipantConfig{
		Rate: s.Rate(),
		// Each frame names the callers mixed into it (RTP CSRC): natkit call
		// reports them as media.mixed_from.
		OutputFrom: func(samples []int16, from []uint32) { _ = s.WriteFrameFrom(samples, from) },
	})
	if err != nil {
		c.s.log.Warn("services: conference", "number", number, "error", err)
		return
	}
	defer leave()
	c.s.st.confJoins.Add(1)
	part.Store(p)
	defer part.Store(nil)
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-c.digits:
			if !containsRune(muteDigits, d) {
				continue
			}
			m := !p.Muted()
			p.SetMuted(m)
			c.s.st.confMutes.Add(1)
			if m {
				p.Play(snd.mute)
			} else {
				p.Play(snd.unmute)
			}
		}
	}
}

func containsRune(s string, r rune) bool {
	for _, c := range s {
		if c == r {
			return true
		}
	}
	return false
}
