// Package wav reads and writes the RIFF WAVE files a telephone system plays:
// mono, 8 kHz, 16-bit linear PCM, or 8-bit G.711 µ-law (format tag 7) and
// A-law (format tag 6), which are decoded to 16-bit on reading.
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/natkit/natkit/pkg/media/g711"
)

// Format is a WAVE format tag (the wFormatTag of the fmt chunk).
type Format uint16

// The format tags this package reads (RFC 2361 lists them all).
const (
	PCM   Format = 1
	ALaw  Format = 6
	MuLaw Format = 7

	extensible Format = 0xfffe
)

func (f Format) String() string {
	switch f {
	case PCM:
		return "PCM"
	case ALaw:
		return "A-law"
	case MuLaw:
		return "µ-law"
	case extensible:
		return "WAVE_FORMAT_EXTENSIBLE"
	}
	return fmt.Sprintf("format tag %d", uint16(f))
}

// SampleRate is the only rate this package accepts: narrowband telephony.
const SampleRate = 8000

// MaxSize bounds what Read accepts (about 70 minutes of 16-bit 8 kHz audio).
const MaxSize = 64 << 20

// Errors; a returned error wraps one of these with the detail.
var (
	ErrNotWAV      = errors.New("wav: not a RIFF WAVE file")
	ErrUnsupported = errors.New("wav: unsupported format")
	ErrMalformed   = errors.New("wav: malformed file")
)

// convertHint says how to make a file this package reads.
const convertHint = "convert with: sox IN -r 8000 -c 1 -b 16 -e signed-integer OUT.wav"

// Audio is a decoded file: its format tag as stored, and linear samples.
type Audio struct {
	Format  Format
	Samples []int16 // 8 kHz mono
}

// Read reads a whole file from r (at most MaxSize bytes).
func Read(r io.Reader) (*Audio, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("wav: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrUnsupported, MaxSize)
	}
	return Decode(data)
}

// Decode parses a file held in memory. Chunks other than "fmt " and "data"
// are skipped; a data chunk whose size runs past the end of the file (as
// streaming writers leave it) is read to the end.
func Decode(data []byte) (*Audio, error) {
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, ErrNotWAV
	}
	var (
		haveFmt bool
		format  Format
		bits    int
	)
	rest := data[12:]
	for len(rest) >= 8 {
		id := string(rest[0:4])
		size := int64(binary.LittleEndian.Uint32(rest[4:8]))
		rest = rest[8:]
		if size > int64(len(rest)) {
			if id != "data" {
				return nil, fmt.Errorf("%w: chunk %q of %d bytes runs past the end of the file", ErrMalformed, id, size)
			}
			size = int64(len(rest))
		}
		body := rest[:size]
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, fmt.Errorf("%w: fmt chunk of %d bytes, want at least 16", ErrMalformed, size)
			}
			format = Format(binary.LittleEndian.Uint16(body[0:2]))
			channels := binary.LittleEndian.Uint16(body[2:4])
			rate := binary.LittleEndian.Uint32(body[4:8])
			bits = int(binary.LittleEndian.Uint16(body[14:16]))
			if err := check(format, channels, rate, bits); err != nil {
				return nil, err
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, fmt.Errorf("%w: data chunk before fmt chunk", ErrMalformed)
			}
			return &Audio{Format: format, Samples: decodeSamples(format, body)}, nil
		}
		// Chunks are padded to an even length (RIFF).
		if size%2 == 1 && size < int64(len(rest)) {
			size++
		}
		rest = rest[size:]
	}
	if !haveFmt {
		return nil, fmt.Errorf("%w: no fmt chunk", ErrMalformed)
	}
	return nil, fmt.Errorf("%w: no data chunk", ErrMalformed)
}

func check(format Format, channels uint16, rate uint32, bits int) error {
	switch {
	case format == PCM && bits != 16:
		return fmt.Errorf("%w: %d-bit PCM, want 16-bit (%s)", ErrUnsupported, bits, convertHint)
	case (format == ALaw || format == MuLaw) && bits != 8:
		return fmt.Errorf("%w: %d-bit %v, want 8-bit", ErrUnsupported, bits, format)
	case format != PCM && format != ALaw && format != MuLaw:
		return fmt.Errorf("%w: %v, want PCM, µ-law or A-law (%s)", ErrUnsupported, format, convertHint)
	case channels != 1:
		return fmt.Errorf("%w: %d channels, want mono (%s)", ErrUnsupported, channels, convertHint)
	case rate != SampleRate:
		return fmt.Errorf("%w: %d Hz, want %d Hz (%s)", ErrUnsupported, rate, SampleRate, convertHint)
	}
	return nil
}

func decodeSamples(format Format, body []byte) []int16 {
	switch format {
	case MuLaw:
		return g711.ULaw.Decode(make([]int16, 0, len(body)), body)
	case ALaw:
		return g711.ALaw.Decode(make([]int16, 0, len(body)), body)
	}
	out := make([]int16, len(body)/2)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
	}
	return out
}

// Write writes samples as a 16-bit PCM, mono, 8 kHz file.
func Write(w io.Writer, samples []int16) error {
	if len(samples) > MaxSize/2 {
		return fmt.Errorf("%w: %d samples, at most %d", ErrUnsupported, len(samples), MaxSize/2)
	}
	dataLen := 2 * len(samples)
	buf := make([]byte, 44+dataLen)
	copy(buf[0:], "RIFF")
	binary.LittleEndian.PutUint32(buf[4:], uint32(36+dataLen))
	copy(buf[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(buf[16:], 16)
	binary.LittleEndian.PutUint16(buf[20:], uint16(PCM))
	binary.LittleEndian.PutUint16(buf[22:], 1)          // channels
	binary.LittleEndian.PutUint32(buf[24:], SampleRate) // sample rate
	binary.LittleEndian.PutUint32(buf[28:], 2*SampleRate)
	binary.LittleEndian.PutUint16(buf[32:], 2)  // block align
	binary.LittleEndian.PutUint16(buf[34:], 16) // bits per sample
	copy(buf[36:], "data")
	binary.LittleEndian.PutUint32(buf[40:], uint32(dataLen))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(buf[44+2*i:], uint16(s))
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("wav: %w", err)
	}
	return nil
}
