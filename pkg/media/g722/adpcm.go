package g722

// band is the ADPCM state of one sub-band; encoder and decoder keep one
// each for the lower and the higher band, and update them identically
// (which is what keeps a decoder in step with its encoder).
type band struct {
	s  int32    // predicted signal estimate, s(n) (PREDIC)
	sz int32    // contribution of the zero section, sz(n) (FILTEZ)
	r  int32    // reconstructed signal of the last sample, r(n-1)
	a  [2]int32 // pole predictor coefficients a1, a2
	p  [2]int32 // partially reconstructed signal p(n-1), p(n-2)
	b  [6]int32 // zero predictor coefficients b1..b6
	d  [7]int32 // quantised differences d(n)..d(n-6)
	nb int32    // logarithmic quantiser scale factor (LOGSCL/LOGSCH)
	// det is the quantiser scale factor, the step size (SCALEL/SCALEH).
	det int32
}

// Step sizes of the reset state (DETL = 32, DETH = 8); every other
// variable starts at zero.
const (
	detLowInit  = 32
	detHighInit = 8
)

// Upper bounds of the logarithmic scale factors (LOGSCL: 18432, LOGSCH:
// 22528), and the exponent offsets of SCALEL (8) and SCALEH (10).
const (
	nbLowMax   = 18432
	nbHighMax  = 22528
	scaleLowSh = 8
	scaleHiSh  = 10
)

func sat16(v int32) int32 {
	if v > 32767 {
		return 32767
	}
	if v < -32768 {
		return -32768
	}
	return v
}

func sat15(v int32) int32 {
	if v > 16383 {
		return 16383
	}
	if v < -16384 {
		return -16384
	}
	return v
}

// signDiffers reports whether x and y, 16-bit values, have opposite signs
// (the standard compares sign bits: zero counts as positive).
func signDiffers(x, y int32) bool { return (x^y)&0x8000 != 0 }

// adaptScale updates the logarithmic scale factor nb by the multiplier w
// with leakage 127/128 and the band's bound (LOGSCL, LOGSCH), then the
// linear step size det from it (SCALEL, SCALEH): det = 2^(nb/2048 + 2 - sh)
// through the inverse-log table ilb.
func (b *band) adaptScale(w, nbMax, sh int32) {
	nb := (b.nb*127)>>7 + w
	if nb < 0 {
		nb = 0
	} else if nb > nbMax {
		nb = nbMax
	}
	b.nb = nb
	m := ilb[(nb>>6)&31]
	e := sh - nb>>11
	if e < 0 {
		m <<= -e
	} else {
		m >>= e
	}
	b.det = int32(int16(m << 2))
}

// predict is block 4 of the standard: given the quantised difference dx of
// this sample, it reconstructs the signal, adapts the pole (a1, a2) and zero
// (b1..b6) predictor coefficients, and leaves the prediction for the next
// sample in b.s.
func (b *band) predict(dx int32) {
	// RECONS and PARREC: reconstructed and partially reconstructed signal.
	r := sat16(b.s + dx)
	p := sat16(b.sz + dx)

	// UPPOL2: second pole coefficient.
	wd1 := sat16(b.a[0] << 2)
	wd32 := -wd1
	if signDiffers(p, b.p[0]) {
		wd32 = wd1
	}
	if wd32 > 32767 {
		wd32 = 32767
	}
	wd3 := int32(128)
	if signDiffers(p, b.p[1]) {
		wd3 = -128
	}
	wd3 += wd32>>7 + (b.a[1]*32512)>>15
	if wd3 > 12288 {
		wd3 = 12288
	} else if wd3 < -12288 {
		wd3 = -12288
	}
	a2 := wd3

	// UPPOL1: first pole coefficient, bounded by 15360 - a2.
	wd1 = 192
	if signDiffers(p, b.p[0]) {
		wd1 = -192
	}
	a1 := sat16(wd1 + (b.a[0]*32640)>>15)
	lim := sat16(15360 - a2)
	if a1 > lim {
		a1 = lim
	} else if a1 < -lim {
		a1 = -lim
	}

	// FILTEP: the pole section's contribution from r(n) and r(n-1).
	sp := sat16((a1*sat16(r+r))>>15 + (a2*sat16(b.r+b.r))>>15)
	b.r = r
	b.a[0], b.a[1] = a1, a2
	b.p[1], b.p[0] = b.p[0], p

	// UPZERO, DELAYA, FILTEZ: sign-sign adaptation of the zero coefficients
	// with leakage 32640/32768, then the zero section's contribution.
	g := int32(128)
	if dx == 0 {
		g = 0
	}
	b.d[0] = dx
	var sz int32
	for i := 5; i >= 0; i-- {
		wd2 := g
		if signDiffers(b.d[i+1], dx) {
			wd2 = -g
		}
		b.b[i] = sat16(wd2 + (b.b[i]*32640)>>15)
		sz += (b.b[i] * sat16(b.d[i]+b.d[i])) >> 15
		b.d[i+1] = b.d[i]
	}
	b.sz = sat16(sz)

	// PREDIC: the signal estimate for the next sample.
	b.s = sat16(sp + b.sz)
}
