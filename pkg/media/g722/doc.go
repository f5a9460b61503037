// Package g722 encodes and decodes ITU-T G.722 at 64 kbit/s (mode 1):
// 16 kHz 16-bit mono linear PCM to and from 8000 bytes per second, one
// byte for every two samples.
//
// # Why hand-written
//
// No pure-Go G.722 module is served by the Go module proxy, and binding a C
// library (spandsp, ffmpeg) through cgo would break natkit's pure-Go
// cross-builds. The algorithm is small and specified to the bit by the
// standard, so it is written here.
//
// # The algorithm (ITU-T G.722 (09/2012))
//
//   - A 24-tap quadrature mirror filter (QMF) splits each pair of 16 kHz
//     input samples into one lower and one higher sub-band sample at 8 kHz
//     (transmit QMF), and the receive QMF joins them again. The two
//     polyphase halves use the 12 coefficients h(0..11) of the
//     symmetric filter forwards and backwards.
//   - The lower sub-band (0–4 kHz) is coded with 6-bit ADPCM: a 60-level
//     adaptive quantiser (QUANTL) on the difference between the sub-band
//     sample and its prediction; only the 4 most significant bits feed the
//     predictor and scale adaptation (INVQAL, LOGSCL, SCALEL), so that
//     dropping the least significant bits (modes 2 and 3) keeps the
//     encoder and decoder in step.
//   - The higher sub-band (4–8 kHz) is coded with 2-bit ADPCM (QUANTH,
//     INVQAH, LOGSCH, SCALEH).
//   - Both sub-bands use the same adaptive predictor (block 4: a
//     two-pole section, PARREC/UPPOL1/UPPOL2/FILTEP, and a six-zero
//     section, UPZERO/FILTEZ), with the saturating 16-bit fixed-point
//     arithmetic of the standard, which is what makes the codec bit exact.
//   - A 64 kbit/s octet carries the 2 higher-band bits in bits 7–6 and the
//     6 lower-band bits in bits 5–0.
//
// The encoder and decoder take and give 16-bit samples; the ADPCM works on
// 15-bit sub-band values, hence the shifts of 14 (transmit) and 11 (receive)
// after the QMF, whose DC gain is 4096. The decoder's output saturates to
// 16 bits (full-scale input and arbitrary code sequences can push the receive
// QMF past the 16-bit range).
//
// # How it is verified
//
// The tests compare this package, bit for bit, with vectors made by two
// third-party implementations that follow the ITU reference (testdata/README.md
// says how; scripts/gen-g722-vectors regenerates them):
//
//   - libspandsp's g722_encode and g722_decode (64 kbit/s, 16 kHz,
//     unpacked): the encoder's bytes for a chirp, noise, a speech-like
//     signal, full-scale extremes and silence, and the decoder's samples for
//     that stream and for arbitrary code bytes. spandsp 0.0.6, the version
//     the vectors were made with, lets the receive QMF's output wrap instead of
//     saturating (fixed there in 2016); an unexported switch does the same
//     for that comparison.
//   - ffmpeg's g722 encoder, whose bytes are spandsp's, and its decoder,
//     whose samples, saturated, are this package's default output.
//
// Further tests check the round-trip delay (22 samples) and SNR of tones,
// that state carries across calls of any length, odd ones included, and
// that calls do not allocate; FuzzEncode and FuzzDecode take any input.
package g722
