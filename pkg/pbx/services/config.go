package services

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/natkit/natkit/pkg/pbx/voicemail"
)

// Service is what a number does.
type Service string

// The services.
const (
	EchoDelayed Service = "echo-delayed" // 9195
	Echo        Service = "echo"         // 9196
	Music       Service = "music"        // 9664
	EarlyMedia  Service = "early-media"  // 9182
	// Fax (9178, 9179 in FreeSWITCH's demo: receive and send a fax) is
	// not supported: 488 with a Warning that says so, so that a fax
	// machine or a test tells "no fax here" from a broken PBX.
	Fax        Service = "fax"
	IVR        Service = "ivr"        // 5000
	Conference Service = "conference" // 3000–3399 (conference.go)
	Voicemail  Service = "voicemail"  // 4000 (voicemail.go)
)

// DefaultNumbers maps FreeSWITCH's demo numbers to the services, the
// conference rooms 3000–3399 among them.
var DefaultNumbers = defaultNumbers()

// DefaultIVRMenu is 5000's menu, as FreeSWITCH's demo IVR: 1 the echo
// test, 2 music on hold, 3 the conference room 3000, 4 voicemail (when
// Config.Voicemail is set; else "not available" and the menu again).
var DefaultIVRMenu = map[rune]string{'1': "9196", '2': "9664", '3': "3000", '4': "4000"}

// Defaults for the zero values of Config.
const (
	DefaultListen       = "127.0.0.1:0"
	DefaultMaxDuration  = time.Hour
	DefaultMediaTimeout = 30 * time.Second
	DefaultEchoDelay    = 5 * time.Second
	// DefaultRingback is how long 9182 plays ringback before the
	// announcement: one "on" of the US cadence.
	DefaultRingback = 2 * time.Second
	// DefaultIVRTimeout is FreeSWITCH's demo IVR's.
	DefaultIVRTimeout = 5 * time.Second
	// DefaultVoicemailMax bounds a voicemail message.
	DefaultVoicemailMax = 120 * time.Second
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Listen is the UDP address for SIP; default DefaultListen.
	Listen string
	// MediaIP is where RTP is received and what the SDP answers say;
	// default the Listen IP, which must then not be unspecified.
	MediaIP netip.Addr
	// MediaPortMin and MediaPortMax bound the RTP ports; both 0: any port.
	MediaPortMin, MediaPortMax uint16
	// Numbers maps Request-URI users to services; nil is DefaultNumbers.
	Numbers map[string]Service
	// IVRMenu maps 5000's digits to numbers; nil is DefaultIVRMenu.
	IVRMenu map[rune]string
	// IVRTimeout is how long 5000 waits for a digit after its menu
	// before playing it again (three times, then it hangs up); default
	// DefaultIVRTimeout.
	IVRTimeout time.Duration

	// Voicemail, when not nil, is where 4000 keeps its messages; nil: 4000
	// answers 480 (with a Warning) and the IVR's 4 is "not available".
	Voicemail *voicemail.Store
	// VoicemailMax bounds a message; default DefaultVoicemailMax.
	VoicemailMax time.Duration
	// VoicemailPINs are the PINs of the boxes, by user. A box without a
	// PIN is opened to its owner on digest authentication alone.
	VoicemailPINs map[string]string
	// VoicemailBox reports whether a user has a box (an account); nil:
	// any valid name (voicemail.ValidBox).
	VoicemailBox func(user string) bool

	MaxDuration  time.Duration // a call's limit; default 1 h
	MediaTimeout time.Duration // no RTP for this long ends a call; default 30 s
	EchoDelay    time.Duration // 9195's delay; default 5 s
	Ringback     time.Duration // 9182's ringback before the announcement; default 2 s

	Logger *slog.Logger // nil discards
}

var errConfig = errors.New("services: config")

func (c *Config) setDefaults() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	ap, err := netip.ParseAddrPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%w: listen %q: %v (want IP:PORT)", errConfig, c.Listen, err)
	}
	if !c.MediaIP.IsValid() {
		if ap.Addr().IsUnspecified() {
			return fmt.Errorf("%w: listen %s is unspecified: set MediaIP", errConfig, c.Listen)
		}
		c.MediaIP = ap.Addr()
	}
	c.MediaIP = c.MediaIP.Unmap()
	if (c.MediaPortMin == 0) != (c.MediaPortMax == 0) || c.MediaPortMin > c.MediaPortMax {
		return fmt.Errorf("%w: media ports %d-%d", errConfig, c.MediaPortMin, c.MediaPortMax)
	}
	if c.Numbers == nil {
		c.Numbers = DefaultNumbers
	}
	if c.IVRMenu == nil {
		c.IVRMenu = DefaultIVRMenu
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d == 0 {
			*d = v
		}
		if *d < 0 {
			return fmt.Errorf("%w: %s %v", errConfig, name, *d)
		}
		return nil
	}
	return errors.Join(
		def(&c.MaxDuration, DefaultMaxDuration, "max duration"),
		def(&c.MediaTimeout, DefaultMediaTimeout, "media timeout"),
		def(&c.EchoDelay, DefaultEchoDelay, "echo delay"),
		def(&c.Ringback, DefaultRingback, "ringback"),
		def(&c.IVRTimeout, DefaultIVRTimeout, "IVR timeout"),
		def(&c.VoicemailMax, DefaultVoicemailMax, "voicemail max"),
	)
}
