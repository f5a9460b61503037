package g722

// Tables of G.722 (09/2012). Every value is the standard's (facts of the
// specification, in the integer scaling of its fixed-point description);
// comments name the functional block (QUANTL, INVQAL, ...) that uses each.

// qmfCoeffs are the transmit and receive QMF coefficients h(0)..h(11)
// (as integers: the standard's values times 2^13); the 24-tap filter is
// symmetric, h(23-i) = h(i), so its two polyphase halves use these 12
// forwards and backwards.
var qmfCoeffs = [12]int32{3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11}

// qmfRev is qmfCoeffs backwards.
var qmfRev = [12]int32{-11, 53, -156, 362, -805, 3876, 951, -210, 32, 12, -11, 3}

// q6 are the decision levels of the lower sub-band quantiser QUANTL,
// to be scaled by the step size.
var q6 = [32]int32{
	0, 35, 72, 110, 150, 190, 233, 276,
	323, 370, 422, 473, 530, 587, 650, 714,
	786, 858, 940, 1023, 1121, 1219, 1339, 1458,
	1612, 1765, 1980, 2195, 2557, 2919, 0, 0,
}

// iln and ilp map the quantiser interval found by QUANTL to the 6-bit
// code, for negative and positive differences.
var iln = [32]int32{
	0, 63, 62, 31, 30, 29, 28, 27,
	26, 25, 24, 23, 22, 21, 20, 19,
	18, 17, 16, 15, 14, 13, 12, 11,
	10, 9, 8, 7, 6, 5, 4, 0,
}

var ilp = [32]int32{
	0, 61, 60, 59, 58, 57, 56, 55,
	54, 53, 52, 51, 50, 49, 48, 47,
	46, 45, 44, 43, 42, 41, 40, 39,
	38, 37, 36, 35, 34, 33, 32, 0,
}

// qm6 is the 6-bit lower sub-band inverse quantiser (INVQBL at 64 kbit/s, the
// QQ6 values scaled to 16 bits), indexed by the 6-bit code.
var qm6 = [64]int32{
	-136, -136, -136, -136, -24808, -21904, -19008, -16704,
	-14984, -13512, -12280, -11192, -10232, -9360, -8576, -7856,
	-7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576,
	-3168, -2776, -2400, -2032, -1688, -1360, -1040, -728,
	24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192,
	10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
	4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032,
	1688, 1360, 1040, 728, 432, 136, -432, -136,
}

// qm4 is the 4-bit inverse quantiser (INVQAL, the QQ4 values) that
// drives the lower sub-band predictor and scale, indexed by the code's 4
// most significant bits.
var qm4 = [16]int32{
	0, -20456, -12896, -8968, -6288, -4240, -2584, -1200,
	20456, 12896, 8968, 6288, 4240, 2584, 1200, 0,
}

// rl42 maps those 4 bits to the magnitude index of the lower logarithmic
// scale factor multipliers wl (LOGSCL).
var rl42 = [16]int32{0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0}

var wl = [8]int32{-60, -30, 58, 172, 334, 538, 1198, 3042}

// ilb is the inverse logarithm used by SCALEL and SCALEH : the
// mantissa of 2^(x/32) for the 5 fraction bits of the log scale factor.
var ilb = [32]int32{
	2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383,
	2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
	2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371,
	3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
}

// qm2 is the 2-bit higher sub-band inverse quantiser (INVQAH),
// indexed by the 2-bit code.
var qm2 = [4]int32{-7408, -1616, 7408, 1616}

// ihn and ihp map the QUANTH decision (1: inner interval, 2: outer) to
// the 2-bit code for negative and positive differences.
var ihn = [3]int32{0, 1, 0}

var ihp = [3]int32{0, 3, 2}

// rh2 maps the 2-bit code to the index of the higher scale factor
// multipliers wh (LOGSCH).
var rh2 = [4]int32{2, 1, 2, 1}

var wh = [3]int32{0, -214, 798}
