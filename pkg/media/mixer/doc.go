// Package mixer is the conference bridge: rooms that mix their
// participants' audio at 8, 16, 32 or 48 kHz and give each one the mix of
// all the others, minus its own voice (N-1 mixing).
//
// A Room mixes a 20 ms frame at each tick of one ticker (Run), whatever
// its number of participants: the frames of all participants are summed
// in 32 bits once, and each participant's output is that sum minus its
// own frame, saturated to 16 bits (a participant who did not talk, or is
// muted, hears the plain sum, computed once). Input is jitter-tolerant: a
// participant's Write lands in a small queue (DefaultQueue, 100 ms) that
// the tick drains a frame at a time; a frame that has not arrived is
// silence, and a queue that overflows drops its oldest audio, so that
// neither a late nor a fast sender holds the room up or grows memory.
// Memory per participant is bounded: the queue, one sound queue (2 s),
// and a few frames.
//
// Participants may speak at another rate than the room (G.711 phones at
// 8 kHz in a 16 kHz room): Write resamples to the room's rate, Output gets
// the mix resampled back. The resampler (package resample) is a rational polyphase FIR (a
// Blackman-windowed sinc, 16 zero crossings each side) written here: none
// of the libraries natkit uses has one (pion's rtp, rtcp, sdp, ice and
// turn carry no audio; sipgo stops at SIP), the one needed is small and
// exactly specified, and the tests check it by its frequency and level
// response. Every room rate is a multiple of 8 kHz, so the ratios are
// small (at most 6:1) and a 20 ms frame converts to a whole 20 ms frame.
//
// Sounds go on top of the mix: Room.Play to everyone (join and leave
// tones), Participant.Play to one (a mute tone), and Config.Hold loops to
// a participant alone in the room (music on hold).
package mixer
