package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/natkit/natkit/pkg/media/g711"
)

// riff builds a file from chunks (id, body); odd bodies get their pad byte.
func riff(chunks ...any) []byte {
	var b bytes.Buffer
	for i := 0; i < len(chunks); i += 2 {
		body := chunks[i+1].([]byte)
		b.WriteString(chunks[i].(string))
		binary.Write(&b, binary.LittleEndian, uint32(len(body)))
		b.Write(body)
		if len(body)%2 == 1 {
			b.WriteByte(0)
		}
	}
	out := append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(4+b.Len()))...)
	return append(append(out, "WAVE"...), b.Bytes()...)
}

func fmtChunk(format Format, channels uint16, rate uint32, bits uint16, extra ...byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(format))
	b = binary.LittleEndian.AppendUint16(b, channels)
	b = binary.LittleEndian.AppendUint32(b, rate)
	b = binary.LittleEndian.AppendUint32(b, rate*uint32(channels)*uint32(bits)/8)
	b = binary.LittleEndian.AppendUint16(b, channels*bits/8)
	b = binary.LittleEndian.AppendUint16(b, bits)
	return append(b, extra...)
}

func TestReadPythonFile(t *testing.T) {
	f, err := os.Open("testdata/cpython_wave_1khz.wav")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if a.Format != PCM || len(a.Samples) != 800 {
		t.Fatalf("format %v, %d samples", a.Format, len(a.Samples))
	}
	for i, s := range a.Samples {
		if want := int16(math.Round(16384 * math.Sin(2*math.Pi*1000*float64(i)/8000))); s != want {
			t.Fatalf("sample %d = %d, want %d", i, s, want)
		}
	}
}

func TestWriteRead(t *testing.T) {
	in := []int16{0, 1, -1, 32767, -32768, 1234, -4321}
	var b bytes.Buffer
	if err := Write(&b, in); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 44+2*len(in) {
		t.Fatalf("file of %d bytes", b.Len())
	}
	// The header is the canonical 44-byte one.
	want := riff("fmt ", fmtChunk(PCM, 1, 8000, 16), "data", make([]byte, 2*len(in)))
	if !bytes.Equal(b.Bytes()[:44], want[:44]) {
		t.Errorf("header\n% x\nwant\n% x", b.Bytes()[:44], want[:44])
	}
	a, err := Read(&b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Format != PCM || !equal(a.Samples, in) {
		t.Errorf("read back %v %v", a.Format, a.Samples)
	}
}

func equal(a, b []int16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeAccepted(t *testing.T) {
	codes := []byte{0xff, 0x80, 0x00, 0x7e, 0x35}
	pcm := []byte{0x01, 0x00, 0xff, 0xff, 0x00, 0x80}
	tests := []struct {
		name   string
		file   []byte
		format Format
		want   []int16
	}{
		{"µ-law with fact chunk (tag 7)", riff("fmt ", fmtChunk(MuLaw, 1, 8000, 8, 0, 0), "fact", []byte{5, 0, 0, 0}, "data", codes), MuLaw, g711.ULaw.Decode(nil, codes)},
		{"A-law (tag 6)", riff("fmt ", fmtChunk(ALaw, 1, 8000, 8), "data", codes), ALaw, g711.ALaw.Decode(nil, codes)},
		{"PCM after odd LIST chunk", riff("LIST", []byte("INFOabc"), "fmt ", fmtChunk(PCM, 1, 8000, 16), "data", pcm), PCM, []int16{1, -1, -32768}},
		{"PCM odd data length drops the half sample", riff("fmt ", fmtChunk(PCM, 1, 8000, 16), "data", append(pcm, 7)), PCM, []int16{1, -1, -32768}},
		{"streaming data size 0xFFFFFFFF", func() []byte {
			f := riff("fmt ", fmtChunk(PCM, 1, 8000, 16), "data", pcm)
			binary.LittleEndian.PutUint32(f[len(f)-len(pcm)-4:], 0xffffffff)
			return f
		}(), PCM, []int16{1, -1, -32768}},
		{"empty data", riff("fmt ", fmtChunk(PCM, 1, 8000, 16), "data", []byte{}), PCM, []int16{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Decode(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if a.Format != tt.format || !equal(a.Samples, tt.want) {
				t.Errorf("got %v %v, want %v %v", a.Format, a.Samples, tt.format, tt.want)
			}
		})
	}
}

func TestDecodeRejected(t *testing.T) {
	data := []byte{0, 0}
	tests := []struct {
		name    string
		file    []byte
		wantErr error
		wantMsg string
	}{
		{"empty", nil, ErrNotWAV, "not a RIFF WAVE"},
		{"RIFF but AVI", append([]byte("RIFF\x04\x00\x00\x00AVI "), 0), ErrNotWAV, "not a RIFF WAVE"},
		{"stereo", riff("fmt ", fmtChunk(PCM, 2, 8000, 16), "data", data), ErrUnsupported, "2 channels, want mono"},
		{"44.1 kHz", riff("fmt ", fmtChunk(PCM, 1, 44100, 16), "data", data), ErrUnsupported, "44100 Hz, want 8000 Hz"},
		{"8-bit PCM", riff("fmt ", fmtChunk(PCM, 1, 8000, 8), "data", data), ErrUnsupported, "8-bit PCM, want 16-bit"},
		{"24-bit PCM", riff("fmt ", fmtChunk(PCM, 1, 8000, 24), "data", data), ErrUnsupported, "24-bit PCM"},
		{"16-bit µ-law", riff("fmt ", fmtChunk(MuLaw, 1, 8000, 16), "data", data), ErrUnsupported, "16-bit µ-law, want 8-bit"},
		{"IEEE float (tag 3)", riff("fmt ", fmtChunk(3, 1, 8000, 32), "data", data), ErrUnsupported, "format tag 3, want PCM"},
		{"GSM 6.10 (tag 49)", riff("fmt ", fmtChunk(49, 1, 8000, 0), "data", data), ErrUnsupported, "format tag 49"},
		{"extensible", riff("fmt ", fmtChunk(extensible, 1, 8000, 16), "data", data), ErrUnsupported, "WAVE_FORMAT_EXTENSIBLE"},
		{"short fmt", riff("fmt ", []byte{1, 0, 1, 0}, "data", data), ErrMalformed, "fmt chunk of 4 bytes"},
		{"data before fmt", riff("data", data, "fmt ", fmtChunk(PCM, 1, 8000, 16)), ErrMalformed, "data chunk before fmt"},
		{"no data", riff("fmt ", fmtChunk(PCM, 1, 8000, 16)), ErrMalformed, "no data chunk"},
		{"no fmt", riff("LIST", []byte("INFO")), ErrMalformed, "no fmt chunk"},
		{"chunk past end", riff("fmt ", fmtChunk(PCM, 1, 8000, 16))[:30], ErrMalformed, "runs past the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.file)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

func TestReadTooLarge(t *testing.T) {
	r := bytes.NewReader(make([]byte, MaxSize+10))
	if _, err := Read(r); !errors.Is(err, ErrUnsupported) {
		t.Errorf("error %v, want ErrUnsupported", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(riff("fmt ", fmtChunk(PCM, 1, 8000, 16), "data", []byte{1, 2, 3, 4}))
	f.Add(riff("fmt ", fmtChunk(MuLaw, 1, 8000, 8), "fact", []byte{1, 0, 0, 0}, "data", []byte{1, 2, 3}))
	f.Add(riff("LIST", []byte("INFOx"), "fmt ", fmtChunk(ALaw, 1, 8000, 8), "data", []byte{1}))
	if b, err := os.ReadFile("testdata/cpython_wave_1khz.wav"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Decode(data)
		if err != nil {
			if a != nil {
				t.Fatal("audio with an error")
			}
			return
		}
		if len(a.Samples) > len(data) {
			t.Fatalf("%d samples from %d bytes", len(a.Samples), len(data))
		}
		// What was read writes back and reads the same.
		var b bytes.Buffer
		if err := Write(&b, a.Samples); err != nil {
			t.Fatal(err)
		}
		again, err := Decode(b.Bytes())
		if err != nil || !equal(again.Samples, a.Samples) {
			t.Fatalf("rewrite: %v", err)
		}
	})
}
