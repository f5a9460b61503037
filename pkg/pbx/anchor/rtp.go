package anchor

// minRTCP is the smallest RTCP packet: a header and an SSRC (RFC 3550 §6.4).
const minRTCP = 8

// validRTP reports whether b is an RTP packet as far as the relay cares
// (RFC 3550 §5.1): version 2, a whole fixed header, its CSRC list and
// header extension inside the packet and a padding count that fits. With
// RTCP multiplexed on the RTP port (RFC 5761 §4) the second byte of an
// RTCP packet is 192-223; such packets pass as RTCP.
func validRTP(b []byte) bool {
	if len(b) < minRTCP || b[0]>>6 != 2 {
		return false
	}
	if isRTCP(b) {
		return validRTCP(b)
	}
	if len(b) < 12 {
		return false
	}
	h := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 { // extension: 16-bit profile, 16-bit length in words
		if len(b) < h+4 {
			return false
		}
		h += 4 + 4*(int(b[h+2])<<8|int(b[h+3]))
	}
	if len(b) < h {
		return false
	}
	if b[0]&0x20 != 0 { // padding: the last byte counts it, itself included
		pad := int(b[len(b)-1])
		if pad == 0 || h+pad > len(b) {
			return false
		}
	}
	return true
}

// isRTCP tells RTCP multiplexed on the RTP port from RTP (RFC 5761 §4).
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }

// validRTCP reports whether b starts like an RTCP compound packet (RFC
// 3550 §6.4.1): version 2, a packet type of 192-223 and a first packet
// whose length fits.
func validRTCP(b []byte) bool {
	if len(b) < minRTCP || b[0]>>6 != 2 || b[1] < 192 || b[1] > 223 {
		return false
	}
	return 4*(int(b[2])<<8|int(b[3])+1) <= len(b)
}
