package anchor

import "testing"

// FuzzValid checks that the header checks never read past a datagram and
// that what passes as RTP holds its whole header.
func FuzzValid(f *testing.F) {
	f.Add(rtpPacket(1, 1))
	f.Add([]byte{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 1, 2, 3, 4})
	f.Add([]byte{0x80, 200, 0, 1, 0, 0, 0, 1})
	f.Add([]byte{0xbf, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		rtcp := validRTCP(b)
		if !validRTP(b) {
			if rtcp {
				t.Fatal("valid RTCP refused on an RTP port (RFC 5761 multiplexing)")
			}
			return
		}
		if rtcp {
			return
		}
		h := 12 + 4*int(b[0]&0x0f)
		if len(b) < h {
			t.Fatalf("%d bytes pass with a %d-byte header", len(b), h)
		}
	})
}
