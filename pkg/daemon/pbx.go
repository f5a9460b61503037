package daemon

import (
	"errors"
	"maps"
	"net/netip"
	"path/filepath"

	"github.com/natkit/natkit/pkg/pbx"
	"github.com/natkit/natkit/pkg/pbx/anchor"
	"github.com/natkit/natkit/pkg/pbx/location"
	"github.com/natkit/natkit/pkg/pbx/services"
	"github.com/natkit/natkit/pkg/pbx/voicemail"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// PBXConfig configures the PBX: the server's own configuration plus what
// the daemon builds for it.
type PBXConfig struct {
	// Config is the SIP server's; Locations and Anchor are built from the
	// fields below when nil.
	pbx.Config
	// StateDir keeps the registrations in a journal there (they survive a
	// restart and kill -9); "" keeps them in memory.
	StateDir string
	// Media, when not nil, anchors the media of proxied calls: an RTP
	// relay (pkg/pbx/anchor) with this configuration, its address in the
	// rewritten SDP being MediaIP.
	Media   *anchor.Config
	MediaIP netip.Addr
	// Services, when not nil, runs the built-in numbers (9195 echo with a
	// delay, 9196 echo, 9664 music on hold, 9182 early media, 5000 IVR,
	// 3000-3399 conference rooms: pkg/pbx/services) as a SIP user agent on loopback that the proxy routes
	// those numbers to (Config.Static). Its RTP is on MediaIP, in the
	// relay's port range when there is one; its Listen defaults to
	// 127.0.0.1:0.
	//
	// Voicemail (4000) runs when Config.Voicemail is set and so are
	// Services and StateDir: the messages are kept in StateDir/voicemail
	// (package voicemail); without StateDir voicemail is off and 4000
	// answers 480.
	Services *services.Config
}

// newPBX builds the location store, the media anchor and the PBX. On error
// whatever it built is closed.
func (d *Daemon) newPBX(pc PBXConfig) (err error) {
	cfg := pc.Config
	if cfg.Logger == nil {
		cfg.Logger = d.cfg.Logger
	}
	defer func() {
		if err != nil {
			d.closePBX()
		}
	}()
	if cfg.Locations == nil {
		if pc.StateDir != "" {
			j, err := location.OpenJournal(location.JournalConfig{Dir: pc.StateDir})
			if err != nil {
				return err
			}
			cfg.Locations, d.locations = j, j
		} else {
			m := location.NewMemory(0)
			cfg.Locations, d.locations = m, m
		}
	}
	if cfg.Anchor == nil && pc.Media != nil {
		mc := *pc.Media
		if mc.Logger == nil {
			mc.Logger = cfg.Logger
		}
		a, err := anchor.New(mc)
		if err != nil {
			return err
		}
		d.anchor = a
		if d.media, err = anchor.NewMedia(a, pc.MediaIP); err != nil {
			return err
		}
		cfg.Anchor = d.media
	}
	var boxes *voicemail.Store
	if pc.Services != nil {
		sc := *pc.Services
		if sc.Listen == "" {
			sc.Listen = "127.0.0.1:0"
		}
		if !sc.MediaIP.IsValid() {
			sc.MediaIP = pc.MediaIP
		}
		if sc.MediaPortMin == 0 && pc.Media != nil {
			sc.MediaPortMin, sc.MediaPortMax = pc.Media.MinPort, pc.Media.MaxPort
			if sc.MediaPortMin == 0 {
				sc.MediaPortMin, sc.MediaPortMax = anchor.DefaultMinPort, anchor.DefaultMaxPort
			}
		}
		if sc.Logger == nil {
			sc.Logger = cfg.Logger
		}
		if cfg.Voicemail != nil && pc.StateDir != "" && sc.Voicemail == nil {
			st, err := voicemail.Open(filepath.Join(pc.StateDir, "voicemail"))
			if err != nil {
				return err
			}
			sc.Voicemail, boxes = st, st
			realm := cfg.Realm
			if realm == "" && len(cfg.Domains) > 0 {
				realm = cfg.Domains[0]
			}
			accounts := cfg.Accounts
			sc.VoicemailBox = func(u string) bool {
				_, ok := accounts.HA1(u, realm, digest.MD5)
				return ok
			}
		}
		if sc.Voicemail == nil {
			cfg.Voicemail = nil // no hand-over to a voicemail that is off
		}
		svc, err := services.New(sc)
		if err != nil {
			return err
		}
		d.services = svc
		numbers := sc.Numbers
		if numbers == nil {
			numbers = services.DefaultNumbers
		}
		static := make(map[string]netip.AddrPort, len(cfg.Static)+len(numbers))
		for n := range numbers {
			static[n] = svc.Addr()
		}
		maps.Copy(static, cfg.Static) // the caller's routes win
		cfg.Static = static
	} else {
		cfg.Voicemail = nil
	}
	if boxes != nil && cfg.Mailboxes == nil {
		cfg.Mailboxes = boxes // message waiting (RFC 3842) for the boxes
	}
	s, err := pbx.New(cfg)
	if err != nil {
		return err
	}
	d.pbx = s
	if boxes != nil {
		boxes.OnChange(s.MailboxChanged)
	}
	return nil
}

// closePBX stops the PBX, then the relay and the location store it used.
func (d *Daemon) closePBX() error {
	var errs []error
	if d.pbx != nil {
		errs = append(errs, d.pbx.Close())
	}
	if d.services != nil {
		errs = append(errs, d.services.Close())
	}
	if d.anchor != nil {
		errs = append(errs, d.anchor.Close())
	}
	if d.locations != nil {
		errs = append(errs, d.locations.Close())
	}
	return errors.Join(errs...)
}

// pbxListeners are the PBX's sockets.
func (d *Daemon) pbxListeners() []Listener {
	if d.pbx == nil {
		return nil
	}
	var ls []Listener
	a := d.pbx.Addrs()
	for _, n := range []struct {
		network string
		addrs   []netip.AddrPort
	}{{"udp", a.UDP}, {"tcp", a.TCP}, {"tls", a.TLS}} {
		for _, ap := range n.addrs {
			ls = append(ls, Listener{Service: "sip", Network: n.network, Addr: ap})
		}
	}
	return ls
}

// PBX returns the SIP server, or nil when it is off.
func (d *Daemon) PBX() *pbx.Server { return d.pbx }

// Services returns the built-in numbers' user agent, or nil when off.
func (d *Daemon) Services() *services.Server { return d.services }

// Media returns the PBX's media anchor, or nil when media is not anchored.
func (d *Daemon) Media() *anchor.Media { return d.media }
