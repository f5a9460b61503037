package dtmf

import (
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"
)

// SIP INFO DTMF (no RFC: the de facto format of Cisco and most phones and
// PBXes): the fallback when the far end negotiated no telephone-event.
const (
	// InfoRelay is "Signal=5\r\nDuration=160\r\n" (Duration in ms).
	InfoRelay = "application/dtmf-relay"
	// InfoPlain is the digit alone.
	InfoPlain = "application/dtmf"
)

// ErrNotDTMF is returned by ParseInfo for an INFO that carries no digit.
var ErrNotDTMF = errors.New("dtmf: INFO body carries no DTMF digit")

// maxInfoBody bounds what ParseInfo reads: the bodies are a few bytes.
const maxInfoBody = 1024

// InfoBody is the application/dtmf-relay body of digit lasting d.
func InfoBody(digit rune, d time.Duration) (contentType string, body []byte, err error) {
	if _, ok := Code(digit); !ok {
		return "", nil, fmt.Errorf("dtmf: %q is not a DTMF digit", digit)
	}
	return InfoRelay, fmt.Appendf(nil, "Signal=%c\r\nDuration=%d\r\n", toUpper(digit), d.Milliseconds()), nil
}

// ParseInfo reads the digit of an INFO body of content type contentType:
// application/dtmf-relay (Signal=, Duration= in ms; Signal 10 and 11 are
// * and #, as some gateways send) or application/dtmf (the digit, or its
// event code). Another content type, or a body without a digit, is
// ErrNotDTMF; d is 0 when the body gives no duration.
func ParseInfo(contentType string, body []byte) (digit rune, d time.Duration, err error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, 0, ErrNotDTMF
	}
	if len(body) > maxInfoBody {
		return 0, 0, ErrNotDTMF
	}
	switch strings.ToLower(mt) {
	case InfoRelay:
		for _, line := range strings.Split(string(body), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "signal":
				digit = signal(v)
			case "duration":
				if ms, err := strconv.Atoi(v); err == nil && ms > 0 && ms <= 60_000 {
					d = time.Duration(ms) * time.Millisecond
				}
			}
		}
	case InfoPlain:
		digit = signal(strings.TrimSpace(string(body)))
	default:
		return 0, 0, ErrNotDTMF
	}
	if digit == 0 {
		return 0, 0, ErrNotDTMF
	}
	return digit, d, nil
}

// signal is the digit a Signal value names: the digit itself, or its
// RFC 4733 event code (0–15); 0 when none.
func signal(v string) rune {
	if len(v) == 1 {
		if _, ok := Code(rune(v[0])); ok {
			return toUpper(rune(v[0]))
		}
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 10 && n <= 15 {
		return Digit(uint8(n))
	}
	return 0
}
