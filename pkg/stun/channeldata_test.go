package stun

import (
	"bytes"
	"testing"
)

func TestChannelData(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		ch      uint16
		data    string
		wantErr bool
	}{
		{"plain", []byte{0x40, 0x00, 0, 3, 'a', 'b', 'c'}, 0x4000, "abc", false},
		{"padded", []byte{0x7f, 0xff, 0, 3, 'a', 'b', 'c', 0}, 0x7fff, "abc", false},
		{"empty", []byte{0x40, 0x01, 0, 0}, 0x4001, "", false},
		{"too long", []byte{0x40, 0x00, 0, 4, 'a'}, 0, "", true},
		{"reserved 0x8000", []byte{0x80, 0x00, 0, 0}, 0, "", true},
		{"below range", []byte{0x3f, 0xff, 0, 0}, 0, "", true},
		{"short", []byte{0x40}, 0, "", true},
		{"short header", []byte{0x40, 0x00, 0x00}, 0, "", true},
		{"stun, not channel", []byte{0x00, 0x01, 0x00, 0x00}, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, data, err := ParseChannelData(tt.in)
			if (err != nil) != tt.wantErr || ch != tt.ch || string(data) != tt.data {
				t.Errorf("got %x %q %v", ch, data, err)
			}
		})
	}
	if got := AppendChannelData(nil, 0x4000, []byte("abc"), true); !bytes.Equal(got, []byte{0x40, 0, 0, 3, 'a', 'b', 'c', 0}) {
		t.Errorf("padded encoding %x", got)
	}
	if n, err := FrameLength([]byte{0x40, 0, 0, 3}); n != 8 || err != nil {
		t.Errorf("frame length %d %v", n, err)
	}
	if n, err := FrameLength([]byte{0x01, 0x01, 0, 8}); n != 28 || err != nil {
		t.Errorf("frame length %d %v", n, err)
	}
	if _, err := FrameLength([]byte{0x01, 0x01, 0, 7}); err == nil {
		t.Error("unaligned STUN length accepted")
	}
	if _, err := FrameLength([]byte{0xc0, 0, 0, 0}); err == nil {
		t.Error("0xC0 accepted")
	}
}

// FuzzChannelData: parsing never panics, and what parses re-encodes to
// the same prefix.
func FuzzChannelData(f *testing.F) {
	f.Add([]byte{0x40, 0x00, 0, 3, 'a', 'b', 'c', 0})
	f.Add([]byte{0x80, 0, 0, 0})
	f.Add([]byte{0x00, 0x01, 0x00, 0x08})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ferr := FrameLength(b)
		ch, data, err := ParseChannelData(b)
		if err == nil {
			if ch < MinChannel || ch > MaxChannel {
				t.Fatalf("channel %x out of range", ch)
			}
			enc := AppendChannelData(nil, ch, data, false)
			if !bytes.Equal(enc, b[:len(enc)]) {
				t.Fatalf("re-encoding %x differs from %x", enc, b)
			}
			if ferr != nil || n < len(enc) || n%4 != 0 {
				t.Fatalf("frame length %d (%v) for ChannelData of %d bytes", n, ferr, len(enc))
			}
		}
		if ferr == nil && (n < 4 || n > 20+0xffff) {
			t.Fatalf("frame length %d", n)
		}
	})
}

func FuzzFrameLength(f *testing.F) {
	f.Add([]byte{0x40, 0, 0, 3})
	f.Add([]byte{0, 1, 0, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := FrameLength(b)
		if err == nil && (n < 4 || n%4 != 0 || n > 20+0xffff) {
			t.Fatalf("%x → %d", b, n)
		}
	})
}
