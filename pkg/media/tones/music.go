package tones

import (
	"math"
	"time"
)

// Music is a music-on-hold loop generated here, so that no recording and no
// copyright is involved: the progression C – Am – F – G (I–vi–IV–V), two
// seconds a chord, as a soft pad under an arpeggio of plucked notes, 8 s in
// all at about -18 dBFS. The notes that ring past the end are folded back
// onto the start, so that the loop joins without a click.
func Music() []int16 {
	const (
		chordLen = 2 * time.Second
		beat     = chordLen / 8 // eighth notes at 120 bpm
	)
	chords := [][]int{ // MIDI note numbers: root, third, fifth
		{48, 52, 55}, // C3 E3 G3
		{45, 48, 52}, // A2 C3 E3
		{41, 45, 48}, // F2 A2 C3
		{43, 47, 50}, // G2 B2 D3
	}
	arp := []int{0, 1, 2, 1, 0, 1, 2, 3} // chord tone index; 3 = root an octave up
	n := Samples(chordLen) * len(chords)
	mix := make([]float64, n)
	add := func(start int, note int, amp, attack, decay float64, dur int) {
		f := 440 * math.Pow(2, float64(note-69)/12)
		for i := range dur {
			t := float64(i) / Rate
			env := amp * math.Exp(-t/decay)
			if t < attack {
				env *= t / attack
			}
			// fundamental and a soft second and third harmonic
			v := math.Sin(2*math.Pi*f*t) + 0.3*math.Sin(4*math.Pi*f*t) + 0.1*math.Sin(6*math.Pi*f*t)
			mix[(start+i)%n] += env * v
		}
	}
	cl := Samples(chordLen)
	for c, chord := range chords {
		start := c * cl
		for _, note := range chord { // pad: slow attack, long sustain
			add(start, note+12, 0.05, 0.3, 3, cl+Samples(time.Second))
		}
		for k, idx := range arp { // plucks two octaves up
			note := chord[idx%3] + 24
			if idx == 3 {
				note = chord[0] + 36
			}
			add(start+k*Samples(beat), note, 0.12, 0.005, 0.35, Samples(1500*time.Millisecond))
		}
	}
	out := make([]int16, n)
	for i, v := range mix {
		out[i] = clip(32767 * v)
	}
	return out
}
