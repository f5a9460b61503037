package g722

// Decoder decodes G.722 at 64 kbit/s to 16 kHz linear PCM. Not safe for
// concurrent use; one per stream (it keeps ADPCM state).
type Decoder struct {
	low, high band
	// sum and diff hold the last 12 values rl+rh and rl-rh that feed the
	// receive QMF, each written twice (see Encoder).
	sum, diff [24]int32
	pos       int
	// wrapOutput makes the receive QMF's output wrap to 16 bits instead of
	// saturating, as libspandsp before 2016 (Debian's 0.0.6) did; the tests
	// set it to compare with that version's vectors sample for sample.
	wrapOutput bool
}

// NewDecoder returns a decoder in the standard's reset state.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.Reset()
	return d
}

// Reset returns the decoder to the standard's reset state.
func (d *Decoder) Reset() {
	*d = Decoder{wrapOutput: d.wrapOutput}
	d.low.det = detLowInit
	d.high.det = detHighInit
}

// Decode appends the 16 kHz samples of payload (two per byte) to dst and
// returns it.
func (d *Decoder) Decode(dst []int16, payload []byte) []int16 {
	dst = grow(dst, 2*len(payload))
	for _, c := range payload {
		rl := d.decodeLow(int32(c & 0x3f))
		rh := d.decodeHigh(int32(c >> 6))
		y0, y1 := d.synthesise(rl, rh)
		dst = append(dst, y0, y1)
	}
	return dst
}

// decodeLow decodes the 6-bit lower sub-band code to its reconstructed
// 15-bit sample (blocks 2L–6L).
func (d *Decoder) decodeLow(il int32) int32 {
	b := &d.low
	// INVQBL, RECONS, LIMIT: the output uses all 6 bits.
	rl := sat15(b.s + (b.det*qm6[il])>>15)
	// INVQAL, LOGSCL, SCALEL, block 4L: adaptation uses the 4 most
	// significant bits only, as in the encoder.
	ril := il >> 2
	dlow := (b.det * qm4[ril]) >> 15
	b.adaptScale(wl[rl42[ril]], nbLowMax, scaleLowSh)
	b.predict(dlow)
	return rl
}

// decodeHigh decodes the 2-bit higher sub-band code (blocks 2H–6H).
func (d *Decoder) decodeHigh(ih int32) int32 {
	b := &d.high
	dhigh := (b.det * qm2[ih]) >> 15
	rh := sat15(dhigh + b.s)
	b.adaptScale(wh[rh2[ih]], nbHighMax, scaleHiSh)
	b.predict(dhigh)
	return rh
}

// synthesise is the receive QMF: from one lower and one higher sub-band
// sample it makes the next two output samples. The shift of 11 takes out
// the filters' gain of 4096 less one bit for the 15-bit sub-band range; the
// result saturates to 16 bits.
func (d *Decoder) synthesise(rl, rh int32) (int16, int16) {
	s, df := rl+rh, rl-rh
	d.sum[d.pos], d.sum[d.pos+12] = s, s
	d.diff[d.pos], d.diff[d.pos+12] = df, df
	d.pos++
	if d.pos == 12 {
		d.pos = 0
	}
	sm := d.sum[d.pos : d.pos+12]
	dm := d.diff[d.pos : d.pos+12]
	var out0, out1 int32
	for i := range 12 {
		out0 += dm[i] * qmfRev[i]
		out1 += sm[i] * qmfCoeffs[i]
	}
	if d.wrapOutput {
		return int16(out0 >> 11), int16(out1 >> 11)
	}
	return int16(sat16(out0 >> 11)), int16(sat16(out1 >> 11))
}
