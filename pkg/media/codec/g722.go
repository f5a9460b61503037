package codec

import "github.com/natkit/natkit/pkg/media/g722"

// G.722 keeps ADPCM state per stream: a fresh encoder and decoder each.
func newG722Encoder() Encoder { return g722.NewEncoder() }
func newG722Decoder() Decoder { return g722.NewDecoder() }
