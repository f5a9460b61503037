// Package g711 encodes and decodes ITU-T G.711 µ-law (PCMU) and A-law (PCMA).
//
// The arithmetic is that of the Sun Microsystems reference implementation
// (g711.c, placed in the public domain), which reproduces the decision and
// reconstruction tables of G.711 Tables 1 and 2: µ-law works on 14-bit and
// A-law on 13-bit linear values, here scaled to 16-bit samples. Decoding uses
// 256-entry tables built from those formulas at start-up.
package g711

const (
	signBit   = 0x80 // sign bit of a G.711 code
	quantMask = 0x0f // quantisation field
	segShift  = 4    // left shift of the segment number
	segMask   = 0x70 // segment field

	ulawBias = 0x84 // µ-law bias added before segment search (G.711 §3.2)
	ulawClip = 8159 // largest 14-bit magnitude µ-law represents
)

// segment ends for A-law (13-bit magnitudes) and µ-law (biased 14-bit).
var (
	segAEnd = [8]int{0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff}
	segUEnd = [8]int{0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff}
)

var ulawTable, alawTable [256]int16

func init() {
	for i := range 256 {
		ulawTable[i] = ulawDecode(byte(i))
		alawTable[i] = alawDecode(byte(i))
	}
}

func search(v int, ends *[8]int) int {
	for i, e := range ends {
		if v <= e {
			return i
		}
	}
	return len(ends)
}

// EncodeULaw returns the µ-law code of a 16-bit linear sample.
func EncodeULaw(s int16) byte {
	v := int(s) >> 2
	mask := 0xff
	if v < 0 {
		v = -v
		mask = 0x7f
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias >> 2
	seg := search(v, &segUEnd)
	if seg >= 8 {
		return byte(0x7f ^ mask)
	}
	u := seg<<segShift | (v>>(seg+1))&quantMask
	return byte(u ^ mask)
}

func ulawDecode(u byte) int16 {
	u = ^u
	t := (int(u&quantMask) << 3) + ulawBias
	t <<= (u & segMask) >> segShift
	if u&signBit != 0 {
		return int16(ulawBias - t)
	}
	return int16(t - ulawBias)
}

// DecodeULaw returns the 16-bit linear value of a µ-law code.
func DecodeULaw(u byte) int16 { return ulawTable[u] }

// EncodeALaw returns the A-law code of a 16-bit linear sample.
func EncodeALaw(s int16) byte {
	v := int(s) >> 3
	mask := 0xd5
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	seg := search(v, &segAEnd)
	if seg >= 8 {
		return byte(0x7f ^ mask)
	}
	a := seg << segShift
	if seg < 2 {
		a |= (v >> 1) & quantMask
	} else {
		a |= (v >> seg) & quantMask
	}
	return byte(a ^ mask)
}

func alawDecode(a byte) int16 {
	a ^= 0x55
	t := int(a&quantMask) << 4
	seg := int(a&segMask) >> segShift
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&signBit != 0 {
		return int16(t)
	}
	return int16(-t)
}

// DecodeALaw returns the 16-bit linear value of an A-law code.
func DecodeALaw(a byte) int16 { return alawTable[a] }

// Law is one of the two G.711 companding laws.
type Law int

const (
	ULaw Law = iota // µ-law, RTP payload type 0 (PCMU), North America and Japan
	ALaw            // A-law, RTP payload type 8 (PCMA), elsewhere
)

// String is the RTP encoding name (RFC 3551 §4.5.14).
func (l Law) String() string {
	if l == ALaw {
		return "PCMA"
	}
	return "PCMU"
}

// PayloadType is the static RTP payload type of the law (RFC 3551 table 4).
func (l Law) PayloadType() uint8 {
	if l == ALaw {
		return 8
	}
	return 0
}

// Encode appends the codes of samples to dst and returns it.
func (l Law) Encode(dst []byte, samples []int16) []byte {
	enc := EncodeULaw
	if l == ALaw {
		enc = EncodeALaw
	}
	for _, s := range samples {
		dst = append(dst, enc(s))
	}
	return dst
}

// Decode appends the linear samples of codes to dst and returns it.
func (l Law) Decode(dst []int16, codes []byte) []int16 {
	table := &ulawTable
	if l == ALaw {
		table = &alawTable
	}
	for _, c := range codes {
		dst = append(dst, table[c])
	}
	return dst
}

// Silence is the code of a zero sample (0xFF µ-law; A-law has no zero and
// 0xD5 is its smallest positive value).
func (l Law) Silence() byte {
	if l == ALaw {
		return 0xd5
	}
	return 0xff
}
