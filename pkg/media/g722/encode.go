package g722

// Encoder encodes 16 kHz linear PCM to G.722 at 64 kbit/s (one byte per two
// samples). Not safe for concurrent use; one per stream (it keeps ADPCM
// state).
type Encoder struct {
	low, high band
	// qmf holds the last 12 even and odd input samples, each written twice
	// (at pos and pos+12) so that hist[pos+1:pos+13] is always the 12 most
	// recent ones, oldest first, without shifting.
	even, odd [24]int32
	pos       int
	// pending is an odd trailing sample kept for the next call.
	pending    int16
	hasPending bool
}

// NewEncoder returns an encoder in the standard's reset state.
func NewEncoder() *Encoder {
	e := &Encoder{}
	e.Reset()
	return e
}

// Reset returns the encoder to the standard's reset state (as at the start
// of a stream), dropping any pending odd sample.
func (e *Encoder) Reset() {
	*e = Encoder{}
	e.low.det = detLowInit
	e.high.det = detHighInit
}

// Encode appends the encoding of pcm (16 kHz samples; an odd trailing sample
// is kept for the next call) to dst and returns it.
func (e *Encoder) Encode(dst []byte, pcm []int16) []byte {
	n := len(pcm)
	if e.hasPending {
		n++
	}
	dst = grow(dst, n/2)
	if e.hasPending && len(pcm) > 0 {
		dst = append(dst, e.encodePair(int32(e.pending), int32(pcm[0])))
		pcm = pcm[1:]
		e.hasPending = false
	}
	for len(pcm) >= 2 {
		dst = append(dst, e.encodePair(int32(pcm[0]), int32(pcm[1])))
		pcm = pcm[2:]
	}
	if len(pcm) == 1 {
		e.pending, e.hasPending = pcm[0], true
	}
	return dst
}

// encodePair encodes two consecutive input samples into one octet.
func (e *Encoder) encodePair(x0, x1 int32) byte {
	xlow, xhigh := e.analyse(x0, x1)
	il := e.encodeLow(xlow)
	ih := e.encodeHigh(xhigh)
	return byte(ih<<6 | il)
}

// analyse is the transmit QMF: it takes the next two input samples and
// returns one lower and one higher sub-band sample (15-bit values: the
// filters' DC gain is 4096 = 2^12, one more bit for summing the two
// polyphase halves, one more for the 15-bit sub-band range).
func (e *Encoder) analyse(x0, x1 int32) (xlow, xhigh int32) {
	e.even[e.pos], e.even[e.pos+12] = x0, x0
	e.odd[e.pos], e.odd[e.pos+12] = x1, x1
	e.pos++
	if e.pos == 12 {
		e.pos = 0
	}
	ev := e.even[e.pos : e.pos+12]
	od := e.odd[e.pos : e.pos+12]
	var sumOdd, sumEven int32
	for i := range 12 {
		sumOdd += ev[i] * qmfCoeffs[i]
		sumEven += od[i] * qmfRev[i]
	}
	return int32(int16((sumEven + sumOdd) >> 14)), int32(int16((sumEven - sumOdd) >> 14))
}

// encodeLow codes one lower sub-band sample to 6 bits (blocks 1L–4L).
func (e *Encoder) encodeLow(xlow int32) int32 {
	b := &e.low
	// SUBTRA: difference from the prediction.
	el := sat16(xlow - b.s)
	// QUANTL: find the interval of |el| among the 30 scaled decision
	// levels (one's complement magnitude, as the standard).
	wd := el
	if el < 0 {
		wd = ^el
	}
	i := 1
	for ; i < 30; i++ {
		if wd < (q6[i]*b.det)>>12 {
			break
		}
	}
	il := ilp[i]
	if el < 0 {
		il = iln[i]
	}
	// INVQAL: the quantised difference from the 4 most significant bits.
	ril := il >> 2
	dlow := (b.det * qm4[ril]) >> 15
	// LOGSCL, SCALEL, then block 4L.
	b.adaptScale(wl[rl42[ril]], nbLowMax, scaleLowSh)
	b.predict(dlow)
	return il
}

// encodeHigh codes one higher sub-band sample to 2 bits (blocks 1H–4H).
func (e *Encoder) encodeHigh(xhigh int32) int32 {
	b := &e.high
	// SUBTRA, QUANTH: one decision level, 564/4096 of the step size.
	eh := sat16(xhigh - b.s)
	wd := eh
	if eh < 0 {
		wd = ^eh
	}
	mih := 1
	if wd >= (564*b.det)>>12 {
		mih = 2
	}
	ih := ihp[mih]
	if eh < 0 {
		ih = ihn[mih]
	}
	// INVQAH, LOGSCH, SCALEH, then block 4H.
	dhigh := (b.det * qm2[ih]) >> 15
	b.adaptScale(wh[rh2[ih]], nbHighMax, scaleHiSh)
	b.predict(dhigh)
	return ih
}

// grow makes room for n more elements in s, allocating only when its
// capacity is short.
func grow[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	t := make([]T, len(s), len(s)+n)
	copy(t, s)
	return t
}
