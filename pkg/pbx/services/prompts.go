package services

import (
	_ "embed"
	"fmt"

	"github.com/natkit/natkit/pkg/media/wav"
)

// earlyMediaWAV is "This is the natkit early media test." spoken by
// espeak-ng, 8 kHz 16-bit mono (scripts/gen-prompts.sh).
//
//go:embed prompts/early-media.wav
var earlyMediaWAV []byte

// announcement decodes the early-media prompt.
func announcement() ([]int16, error) { return decodePrompt("early-media", earlyMediaWAV) }

// The IVR's prompts (5000), made as the early-media one.
//
//go:embed prompts/ivr-menu.wav
var ivrMenuWAV []byte

//go:embed prompts/ivr-invalid.wav
var ivrInvalidWAV []byte

// prompt decodes an embedded prompt.
func decodePrompt(name string, b []byte) ([]int16, error) {
	a, err := wav.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("services: %s prompt: %w", name, err)
	}
	return a.Samples, nil
}
