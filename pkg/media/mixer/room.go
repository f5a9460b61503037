package mixer

import (
	"context"
	"errors"
	"fmt"
	"github.com/natkit/natkit/pkg/media/resample"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Ptime is the room's frame: 20 ms, mixed at each tick of its ticker.
const Ptime = 20 * time.Millisecond

// Defaults for the zero values of Config.
const (
	// DefaultRate is narrowband, G.711's rate.
	DefaultRate = 8000
	// DefaultQueue is how much of a participant's audio may wait for the
	// room's tick: five frames, enough for 80 ms of network jitter on
	// top of the tick's own phase. Beyond it the oldest audio is dropped.
	DefaultQueue = 100 * time.Millisecond
	// maxSound bounds a sound queued to the room or one participant.
	maxSound = 2 * time.Second
)

// silenceLevel is the largest sample of a frame that counts as silence
// for OutputFrom's sources (about -54 dBFS: comfort-noise level).
const silenceLevel = 64

// Rates are the rooms' sample rates.
var Rates = []int{8000, 16000, 32000, 48000}

// Config configures a room. Zero values mean the documented defaults.
type Config struct {
	Rate int // one of Rates; default DefaultRate
	// Hold is played, looped, to a participant alone in the room (music
	// on hold), at Rate; nil: silence.
	Hold []int16
	// Queue is each participant's input queue; default DefaultQueue, at
	// least one frame.
	Queue time.Duration
}

// ParticipantConfig configures one participant.
type ParticipantConfig struct {
	// Rate is the participant's codec rate (Hz), which Write takes and
	// Output gives; 0 means the room's. Audio is resampled between it and
	// the room's rate.
	Rate int
	// Output receives each frame the participant hears (20 ms at Rate):
	// the mix of the others, sounds played to the room or to it alone. It
	// runs on the room's goroutine, so it must not block; samples is
	// reused after it returns. nil discards.
	Output func(samples []int16)
	// OutputFrom, when set, is called instead of Output with the sources
	// mixed into the frame too: the Source of each other participant whose
	// audio was in it (talking, not muted, not silent), for the CSRC list of
	// the RTP packet that carries it (RFC 3550 §7.1). from is reused after
	// it returns.
	OutputFrom func(samples []int16, from []uint32)
}

// Errors.
var (
	ErrClosed = errors.New("mixer: room closed")
	errRate   = errors.New("mixer: rate")
)

// Room mixes its participants: each hears the sum of the others and not
// itself. Its methods may be called from any goroutine.
type Room struct {
	rate, frame int
	queue       int // samples
	hold        []int16
	holdPos     int // the room's goroutine only

	mu      sync.Mutex
	parts   []*Participant
	sound   ring // played to everyone
	closed  bool
	closeCh chan struct{}

	// The mixing goroutine's own (under mixMu).
	mixMu  sync.Mutex
	tick   []*Participant
	sum    []int32
	all    []int16
	played []int16

	ticks atomic.Uint64
}

// New validates cfg; Run paces the room, or Mix mixes one frame.
func New(cfg Config) (*Room, error) {
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if !slices.Contains(Rates, cfg.Rate) {
		return nil, fmt.Errorf("%w: %d Hz, want one of %v", errRate, cfg.Rate, Rates)
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	frame := samplesIn(Ptime, cfg.Rate)
	q := samplesIn(cfg.Queue, cfg.Rate)
	if q < frame {
		return nil, fmt.Errorf("mixer: queue %v shorter than a frame", cfg.Queue)
	}
	return &Room{
		rate: cfg.Rate, frame: frame, queue: q, hold: cfg.Hold,
		sound:   newRing(samplesIn(maxSound, cfg.Rate)),
		closeCh: make(chan struct{}),
		sum:     make([]int32, frame),
		all:     make([]int16, frame),
		played:  make([]int16, frame),
	}, nil
}

func samplesIn(d time.Duration, rate int) int { return int(d * time.Duration(rate) / time.Second) }

// Rate is the room's sample rate.
func (r *Room) Rate() int { return r.rate }

// FrameSamples is the number of samples in one frame at the room's rate.
func (r *Room) FrameSamples() int { return r.frame }

// Len is the number of participants.
func (r *Room) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.parts)
}

// Ticks is the number of frames mixed.
func (r *Room) Ticks() uint64 { return r.ticks.Load() }

// Join adds a participant; ErrClosed once the room is closed.
func (r *Room) Join(cfg ParticipantConfig) (*Participant, error) {
	if cfg.Rate == 0 {
		cfg.Rate = r.rate
	}
	in, err := resample.New(cfg.Rate, r.rate)
	if err != nil {
		return nil, err
	}
	out, err := resample.New(r.rate, cfg.Rate)
	if err != nil {
		return nil, err
	}
	if samplesIn(Ptime, cfg.Rate)*r.rate != r.frame*cfg.Rate {
		return nil, fmt.Errorf("%w: %d Hz has no whole 20 ms frame", errRate, cfg.Rate)
	}
	p := &Participant{
		room: r, rate: cfg.Rate, output: cfg.Output, outputFrom: cfg.OutputFrom, in: in, out: out,
		queue:  newRing(r.queue),
		sound:  newRing(samplesIn(maxSound, r.rate)),
		frame:  make([]int16, r.frame),
		mix:    make([]int16, r.frame),
		outBuf: make([]int16, 0, out.OutLen(r.frame)),
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	r.parts = append(r.parts, p)
	return p, nil
}

// Play queues samples (at the room's rate) to be heard by everyone, on
// top of the mix: join and leave tones. What does not fit in 2 s of queue
// is dropped.
func (r *Room) Play(samples []int16) {
	r.mu.Lock()
	r.sound.write(samples)
	r.mu.Unlock()
}

// Run mixes a frame every 20 ms, on one ticker for the whole room, until
// ctx ends or Close is called. A tick that comes late (a loaded host) is
// not made up for: the ticker drops it, and the participants' queues
// absorb the difference.
func (r *Room) Run(ctx context.Context) error {
	t := time.NewTicker(Ptime)
	defer t.Stop()
	return r.run(ctx, t.C, time.Now())
}

// maxCatchUp bounds the frames one tick mixes to catch up: after a longer
// stall the room skips ahead rather than send a burst (100 ms, the input
// queues' default).
const maxCatchUp = 5

// run mixes a frame for every Ptime since start, on the ticks of ticks: a
// time.Ticker drops the ticks its reader was too late for, and a room that
// mixed one frame a tick would then send fewer than 50 a second on a loaded
// host (BenchmarkRooms saw 0.07 % of frames missing) while its callers'
// queues filled; the frames due are mixed on the next tick instead.
func (r *Room) run(ctx context.Context, ticks <-chan time.Time, start time.Time) error {
	var done int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.closeCh:
			return nil
		case now := <-ticks:
			due := int64(now.Sub(start) / Ptime)
			if due-done > maxCatchUp {
				done = due - maxCatchUp
			}
			for ; done < due; done++ {
				r.Mix()
			}
		}
	}
}

// Close ends Run; Join then fails. Idempotent.
func (r *Room) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.closeCh)
	}
	return nil
}

// Mix mixes one frame: it takes a frame from each participant's queue (a
// missing one is silence), sums them in 32 bits, and gives each
// participant the sum minus its own frame, saturated to 16 bits, with the
// sounds played to the room and to it; a participant alone hears Hold.
func (r *Room) Mix() {
	r.mixMu.Lock()
	defer r.mixMu.Unlock()
	r.ticks.Add(1)
	r.mu.Lock()
	r.tick = append(r.tick[:0], r.parts...)
	sound := r.sound.readPad(r.played)
	r.mu.Unlock()

	clear(r.sum)
	for _, p := range r.tick {
		p.talking = p.take() && !p.muted.Load()
		if !p.talking {
			continue
		}
		p.audible = false
		for k, v := range p.frame {
			r.sum[k] += int32(v)
			if v > silenceLevel || v < -silenceLevel {
				p.audible = true
			}
		}
	}
	var hold []int16
	if len(r.tick) == 1 && len(r.hold) > 0 {
		hold = r.holdFrame()
	}
	// What a participant who is not talking hears: all of the sum.
	allDone := false
	for _, p := range r.tick {
		out := p.mix
		switch {
		case hold != nil:
			copy(out, hold)
		case p.talking:
			for k, s := range r.sum {
				out[k] = sat(s - int32(p.frame[k]))
			}
		default:
			if !allDone {
				for k, s := range r.sum {
					r.all[k] = sat(s)
				}
				allDone = true
			}
			copy(out, r.all)
		}
		if sound {
			addSat(out, r.played)
		}
		if p.outputFrom != nil {
			p.from = p.from[:0]
			if hold == nil {
				for _, q := range r.tick {
					if q != p && q.talking && q.audible {
						if id := q.source.Load(); id != 0 {
							p.from = append(p.from, id)
						}
					}
				}
			}
		}
		p.deliver()
	}
	r.tick = r.tick[:0]
}

// holdFrame is the next frame of the hold loop.
func (r *Room) holdFrame() []int16 {
	out := r.all
	for i := 0; i < len(out); {
		if r.holdPos >= len(r.hold) {
			r.holdPos = 0
		}
		n := copy(out[i:], r.hold[r.holdPos:])
		i += n
		r.holdPos += n
	}
	return out
}

func (r *Room) leave(p *Participant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.Index(r.parts, p); i >= 0 {
		r.parts = slices.Delete(r.parts, i, i+1)
	}
}

func addSat(dst, src []int16) {
	for k, v := range src {
		dst[k] = sat(int32(dst[k]) + int32(v))
	}
}

// Participant is one member of a room.
type Participant struct {
	room       *Room
	rate       int
	output     func([]int16)
	outputFrom func([]int16, []uint32)
	source     atomic.Uint32 // SetSource's; 0: none
	muted      atomic.Bool
	left       atomic.Bool

	mu      sync.Mutex // Write's and Play's against the mixer's
	in      *resample.Resampler
	scratch []int16
	queue   ring
	sound   ring
	started bool // written to at least once

	// The mixing goroutine's own.
	out     *resample.Resampler
	frame   []int16 // this tick's input, at the room's rate
	mix     []int16 // what it hears, at the room's rate
	outBuf  []int16 // the same at its rate
	talking bool
	audible bool     // talking, and its frame not silence
	from    []uint32 // the sources it hears this tick

	st struct {
		written, underruns, dropped, heard atomic.Uint64
	}
}

// Rate is the participant's rate.
func (p *Participant) Rate() int { return p.rate }

// Write queues samples the participant said, at its rate (any length:
// RTP frames of any packet time). It does not block on the mixer.
func (p *Participant) Write(samples []int16) {
	if p.left.Load() {
		return
	}
	p.mu.Lock()
	p.scratch = p.in.Process(p.scratch[:0], samples)
	d := p.queue.write(p.scratch)
	p.started = true
	p.mu.Unlock()
	p.st.written.Add(uint64(len(samples)))
	if d > 0 {
		p.st.dropped.Add(uint64(d))
	}
}

// Play queues samples (at the room's rate) for this participant alone, on
// top of what it hears: a mute or unmute tone.
func (p *Participant) Play(samples []int16) {
	p.mu.Lock()
	p.sound.write(samples)
	p.mu.Unlock()
}

// SetSource names the participant as a source of the mix (its RTP SSRC):
// the others' OutputFrom lists it while its audio is in what they hear.
func (p *Participant) SetSource(id uint32) { p.source.Store(id) }

// SetMuted mutes or unmutes: a muted participant's audio reaches no one
// (its queue still drains), and it still hears the room.
func (p *Participant) SetMuted(m bool) { p.muted.Store(m) }

// Muted reports whether the participant is muted.
func (p *Participant) Muted() bool { return p.muted.Load() }

// Leave removes the participant from its room. Idempotent.
func (p *Participant) Leave() {
	if p.left.Swap(true) {
		return
	}
	p.room.leave(p)
}

// take moves a frame from the queue to p.frame; false when a whole one
// has not arrived (silence: an underrun, once the participant has
// started sending).
func (p *Participant) take() bool {
	p.mu.Lock()
	ok := p.queue.read(p.frame)
	started := p.started
	p.mu.Unlock()
	if !ok && started {
		p.st.underruns.Add(1)
	}
	return ok
}

// deliver adds p's own sounds to p.mix, converts it to p's rate and hands
// it over.
func (p *Participant) deliver() {
	p.mu.Lock()
	if p.sound.size > 0 {
		buf := p.frame // taken already: free for reuse
		if p.sound.readPad(buf) {
			addSat(p.mix, buf)
		}
	}
	p.mu.Unlock()
	p.outBuf = p.out.Process(p.outBuf[:0], p.mix)
	p.st.heard.Add(1)
	switch {
	case p.outputFrom != nil:
		p.outputFrom(p.outBuf, p.from)
	case p.output != nil:
		p.output(p.outBuf)
	}
}

// Stats are a participant's counters.
type Stats struct {
	Written   uint64 `json:"written"`   // samples written, at its rate
	Heard     uint64 `json:"heard"`     // frames delivered to Output
	Underruns uint64 `json:"underruns"` // ticks with no whole frame queued (silence), once started
	Dropped   uint64 `json:"dropped"`   // samples dropped from a full queue (room rate)
	Muted     bool   `json:"muted"`
}

// Stats returns a snapshot of p's counters.
func (p *Participant) Stats() Stats {
	return Stats{
		Written: p.st.written.Load(), Heard: p.st.heard.Load(),
		Underruns: p.st.underruns.Load(), Dropped: p.st.dropped.Load(),
		Muted: p.muted.Load(),
	}
}

// sat saturates to int16.
func sat(v int32) int16 {
	if v > math.MaxInt16 {
		return math.MaxInt16
	}
	if v < math.MinInt16 {
		return math.MinInt16
	}
	return int16(v)
}
