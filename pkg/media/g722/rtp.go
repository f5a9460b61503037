package g722

// Figures an RTP session needs for G.722.
const (
	// SampleRate is the audio's sampling rate: 16 kHz.
	SampleRate = 16000
	// RTPClockRate is the RTP timestamp rate of G.722: 8000 Hz, although
	// the audio is sampled at 16 kHz — an error in the original RFC 1890
	// kept for compatibility (RFC 3551 §4.5.2). A 20 ms packet of 320
	// samples (160 octets) advances the timestamp by 160.
	RTPClockRate = 8000
	// PayloadType is G.722's static RTP payload type (RFC 3551 Table 4);
	// SDP names it "G722/8000".
	PayloadType = 9
)
