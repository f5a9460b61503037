package mixer

import "math"

// sine is n samples of freq Hz at rate, amplitude a.
func sine(freq float64, rate, n int, a float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(math.Round(a * math.Sin(2*math.Pi*freq*float64(i)/float64(rate))))
	}
	return out
}

// power is the share of samples' energy at freq Hz (Goertzel, as
// tones.Power at any rate): near 1 for a pure tone at freq.
func power(samples []int16, freq float64, rate int) float64 {
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2, total float64
	for _, x := range samples {
		v := float64(x)
		s1, s2 = v+coeff*s1-s2, s1
		total += v * v
	}
	if total == 0 {
		return 0
	}
	p := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * p / (float64(len(samples)) * total)
}
