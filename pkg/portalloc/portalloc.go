// Package portalloc reads how a NAT allocates the public ports of new
// mappings — kept from the local port, sequential with a constant stride, or
// random — from the mappings of successive new flows, and predicts the
// ports it gives next. natkit detect and natkit punch share it.
package portalloc

import "strconv"

// Allocation is how a NAT picks the public port of a new mapping; the
// strings are the contract's (natkit detect's port_allocation).
type Allocation string

// Allocations.
const (
	Preserved  Allocation = "preserved"  // public port = local port
	Sequential Allocation = "sequential" // each new mapping: the previous one's port + stride
	Random     Allocation = "random"
	Unknown    Allocation = "unknown"
)

// Sample is one new mapping: the local port and the public port the NAT
// gave it. Samples are read in the order the mappings were made.
type Sample struct {
	Local  uint16 `json:"local"`
	Mapped uint16 `json:"mapped"`
}

// Tuning of the analysis.
const (
	// MinSamples is the least number of mappings that tell anything.
	MinSamples = 3
	// MaxGap is how many ports other flows through the NAT may take
	// between two of ours: a step of up to MaxGap+1 strides still counts
	// as the stride.
	MaxGap = 3
	// ringLow is the first port of the dynamic range that NATs allocate
	// from when they avoid the well-known ports (Linux: 1024–65535); an
	// allocation that passes 65535 goes on at ringLow.
	ringLow  = 1024
	ringSize = 65536 - ringLow
)

// Analysis is what Classify read from the samples.
type Analysis struct {
	Allocation Allocation
	// Stride is the step between successive new mappings when the
	// allocation is sequential: positive or negative, of any size (1 for
	// most sequential NATs, 256 for some, -2 ...); 0 otherwise.
	Stride int
	// Last is the public port of the newest sample.
	Last uint16
	// Reason says why the allocation is unknown; "" otherwise.
	Reason string
}

// Next returns the public port the NAT should give the next new mapping
// (sequential allocation only; 0 otherwise).
func (a Analysis) Next() uint16 {
	if a.Allocation != Sequential || a.Stride == 0 {
		return 0
	}
	return Ports(a.Last, a.Stride, 2)[1]
}

// Classify reads the public ports of successive new mappings (pure):
// preserved when all of them (or all but one, from four samples on) keep
// the local port; sequential when a strict majority of the steps between
// successive mappings is one stride, or a small multiple of it (other
// flows took the ports in between: up to MaxGap), forgiving one sample
// that does not fit (from five samples) or two (from six, when the rest
// is exactly regular); random otherwise.
//
// Steps are read modulo 65536 and, when both ports are at least 1024,
// also around the dynamic range 1024–65535, so that an allocation that
// wraps from 65535 to 1024 stays sequential.
func Classify(samples []Sample) Analysis {
	if len(samples) < MinSamples {
		return Analysis{Allocation: Unknown, Reason: "port allocation: only " + strconv.Itoa(len(samples)) +
			" new mappings observed, " + strconv.Itoa(MinSamples) + " needed"}
	}
	a := Analysis{Allocation: Random, Last: samples[len(samples)-1].Mapped}
	kept := 0
	for _, s := range samples {
		if s.Local == s.Mapped {
			kept++
		}
	}
	if kept == len(samples) || (len(samples) >= 4 && kept == len(samples)-1) {
		a.Allocation = Preserved
		return a
	}
	seq := func(d int) Analysis {
		a.Allocation, a.Stride = Sequential, d
		return a
	}
	if d, ok := steady(samples); ok {
		return seq(d)
	}
	// A socket can land on the local port of a socket of an earlier run
	// whose mapping toward the same server still lives; it then reports
	// that old mapping. One such sample is forgiven.
	if len(samples) >= 5 {
		for skip := range samples {
			if d, ok := steady(without(samples, skip)); ok {
				return seq(d)
			}
		}
	}
	// Two such samples (20 runs in a row in the lab met this) are forgiven
	// only when every step of the four or more left is the same: a random
	// NAT passes that with odds of about 2^-32.
	if len(samples) >= 6 {
		for i := range samples {
			for j := i + 1; j < len(samples); j++ {
				if d, ok := uniform(without(without(samples, j), i)); ok {
					return seq(d)
				}
			}
		}
	}
	return a
}

// Ports returns n ports from first on, stride apart: first, first+stride,
// ... They wrap around the dynamic range 1024–65535 when first is in it,
// else around all 65536 ports.
func Ports(first uint16, stride, n int) []uint16 {
	out := make([]uint16, 0, max(n, 0))
	for i := range n {
		p := int(first) + i*stride
		if first >= ringLow {
			p = ringLow + mod(p-ringLow, ringSize)
		} else {
			p = mod(p, 65536)
		}
		out = append(out, uint16(p))
	}
	return out
}

// steps returns the ways to read the step from port a to port b: modulo
// 65536 and, when both are in the dynamic range, around it. Each is in
// (-half, half] of its ring.
func steps(a, b uint16) [2]int {
	s := [2]int{int(int16(b - a)), 0}
	if a >= ringLow && b >= ringLow {
		d := mod(int(b)-int(a), ringSize)
		if d > ringSize/2 {
			d -= ringSize
		}
		s[1] = d
	}
	return s
}

// fits reports whether the step from a to b is k strides, 1 ≤ k ≤ MaxGap+1.
func fits(a, b uint16, stride int) bool {
	for _, d := range steps(a, b) {
		if d != 0 && d%stride == 0 && d/stride >= 1 && d/stride <= MaxGap+1 {
			return true
		}
	}
	return false
}

// exact reports whether the step from a to b is exactly stride.
func exact(a, b uint16, stride int) bool {
	s := steps(a, b)
	return s[0] == stride || s[1] == stride
}

// steady returns the stride that a strict majority of the steps fits (as
// one stride or a few), preferring the one most steps are exactly, then
// the smaller one.
func steady(samples []Sample) (int, bool) {
	n := len(samples) - 1
	best, bestFit, bestExact := 0, 0, 0
	for i := 1; i < len(samples); i++ {
		for _, d := range steps(samples[i-1].Mapped, samples[i].Mapped) {
			if d == 0 {
				continue
			}
			fit, ex := 0, 0
			for j := 1; j < len(samples); j++ {
				a, b := samples[j-1].Mapped, samples[j].Mapped
				if fits(a, b, d) {
					fit++
				}
				if exact(a, b, d) {
					ex++
				}
			}
			if fit > bestFit || (fit == bestFit && (ex > bestExact || (ex == bestExact && abs(d) < abs(best)))) {
				best, bestFit, bestExact = d, fit, ex
			}
		}
	}
	return best, best != 0 && 2*bestFit > n
}

// uniform returns the stride when every step is exactly the same one.
func uniform(samples []Sample) (int, bool) {
	for _, d := range steps(samples[0].Mapped, samples[1].Mapped) {
		if d == 0 {
			continue
		}
		ok := true
		for i := 2; i < len(samples) && ok; i++ {
			ok = exact(samples[i-1].Mapped, samples[i].Mapped, d)
		}
		if ok {
			return d, true
		}
	}
	return 0, false
}

// without returns samples less the one at index i (a copy).
func without(samples []Sample, i int) []Sample {
	return append(append([]Sample{}, samples[:i]...), samples[i+1:]...)
}

func mod(a, m int) int { return ((a % m) + m) % m }

func abs(a int) int {
	if a < 0 {
		return -a
	}
	return a
}
