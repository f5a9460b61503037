// Package media holds natkit's audio: one set of leaf packages that the
// client (natkit call) and the PBX share, and Figures, the media numbers a
// call report shows.
//
// The subpackages:
//
//   - g711: G.711 µ-law and A-law (hand-written).
//   - wav: RIFF WAVE read and write, 8 kHz mono PCM or G.711 (hand-written).
//   - tones: tones, call-progress cadences, a generated music-on-hold loop,
//     chirp and noise probes (hand-written).
//   - dtmf: in-band DTMF and RFC 4733 telephone-events (hand-written).
//   - echo: echo delay by cross-correlation (hand-written, with its own FFT).
//   - mos: the simplified ITU-T G.107 E-model, R and MOS (hand-written).
//   - g722: G.722 64 kbit/s (hand-written, bit-exact with spandsp's vectors).
//   - codec: one description per codec (PCMU, PCMA, G.722, L16 at 8–48
//     kHz; RTP clock rate apart from the audio rate) and per-stream
//     encoders and decoders over g711, g722 and L16 (hand-written).
//   - resample: a polyphase resampler between 8, 16, 32 and 48 kHz
//     (hand-written).
//   - mixer: conference rooms (N-1 mixing at 8–48 kHz) (hand-written).
//   - rtpsession: RTP and RTCP over a caller's net.PacketConn. The wire
//     formats are pion's: github.com/pion/rtp builds and parses RTP packets
//     and github.com/pion/rtcp the SR, RR, SDES and BYE packets. What an RTP
//     endpoint does with them is written here: RFC 3550 sequence validation,
//     loss and jitter (Appendix A.1, A.3, A.8), report timing, RTT from
//     LSR/DLSR (§6.4.1), RFC 5761 multiplexing, latching, pacing.
//
// Why hand-written: pion/rtp and pion/rtcp are wire formats only, and the
// other libraries natkit already uses (pion/ice, pion/turn, pion/stun) have
// no audio at all — no G.711 codec (pion/rtp's codecs package only
// packetises G.711 payloads, it does not encode them), no WAV, no E-model,
// no reception statistics. Each of those is small, specified exactly by its
// standard, and tested here against published values or an independent
// implementation (CPython's audioop and wave modules for G.711 and WAV), so
// a further dependency would buy nothing.
package media
