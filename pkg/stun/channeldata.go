package stun

import (
	"encoding/binary"
	"errors"
)

// TURN's ChannelData message (RFC 8656 §12.4) shares the wire with STUN:
// the first two bits tell them apart (00 STUN, 01 ChannelData).

// Channel numbers (RFC 8656 §12): 0x8000-0xFFFF are reserved.
const (
	MinChannel uint16 = 0x4000
	MaxChannel uint16 = 0x7FFF
)

// ChannelDataHeaderSize is the size of ChannelData's header: the channel
// number and the data's length.
const ChannelDataHeaderSize = 4

// ErrFrame reports bytes that are neither a STUN message nor ChannelData.
var ErrFrame = errors.New("stun: not a STUN message or ChannelData")

// ParseChannelData splits a ChannelData message into its channel number
// and data. Trailing padding (required on streams) is ignored; a length
// beyond the buffer or a number outside MinChannel-MaxChannel is ErrFrame.
func ParseChannelData(b []byte) (channel uint16, data []byte, err error) {
	if len(b) < ChannelDataHeaderSize {
		return 0, nil, ErrFrame
	}
	channel = binary.BigEndian.Uint16(b[0:2])
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if channel < MinChannel || channel > MaxChannel || ChannelDataHeaderSize+n > len(b) {
		return 0, nil, ErrFrame
	}
	return channel, b[ChannelDataHeaderSize : ChannelDataHeaderSize+n], nil
}

// AppendChannelData appends a ChannelData message, padded to four bytes
// when pad is set (streams, RFC 8656 §12.5).
func AppendChannelData(dst []byte, channel uint16, data []byte, pad bool) []byte {
	dst = binary.BigEndian.AppendUint16(dst, channel)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
	dst = append(dst, data...)
	if pad {
		dst = append(dst, make([]byte, (4-len(data)%4)%4)...)
	}
	return dst
}

// FrameLength returns the length on a stream of the frame whose first four
// bytes are hdr: a STUN message (20 + its length, RFC 8489 §6.2.2) or a
// ChannelData message padded to four bytes (RFC 8656 §12.5: "over TCP and
// TLS-over-TCP, the ChannelData message MUST be padded to a multiple of
// four bytes").
func FrameLength(hdr []byte) (int, error) {
	if len(hdr) < ChannelDataHeaderSize {
		return 0, ErrFrame
	}
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	switch hdr[0] >> 6 {
	case 0:
		if n%4 != 0 {
			return 0, ErrFrame
		}
		return HeaderSize + n, nil
	case 1:
		return ChannelDataHeaderSize + (n+3)&^3, nil
	}
	return 0, ErrFrame
}
