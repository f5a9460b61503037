package daemon

import (
	"crypto/tls"
	"errors"
	"sync/atomic"

	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/turnserver"
)

// CertSource holds the certificate of the TLS listeners (STUN, TURN and
// SIP over TLS) and lets it be replaced while they serve: put its
// GetCertificate in their tls.Config. A handshake that starts after Set
// returns gets the new certificate; connections already up keep theirs.
type CertSource struct {
	p atomic.Pointer[tls.Certificate]
}

// NewCertSource returns a CertSource serving cert.
func NewCertSource(cert tls.Certificate) *CertSource {
	c := &CertSource{}
	c.Set(cert)
	return c
}

// Set replaces the certificate.
func (c *CertSource) Set(cert tls.Certificate) { c.p.Store(&cert) }

// Certificate returns the certificate served now.
func (c *CertSource) Certificate() *tls.Certificate { return c.p.Load() }

// GetCertificate is for tls.Config.GetCertificate.
func (c *CertSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.p.Load(), nil
}

// Accounts are the credentials Reload swaps: TURN's long-term users and
// REST secret, and the PBX's accounts.
type Accounts struct {
	TURNUsers  []turnserver.User
	TURNSecret turnserver.Secret
	// SIP is the PBX's accounts; with the PBX on it must not be nil.
	SIP digest.Store
}

// Reload checks a, then swaps the running servers' accounts for it: the
// TURN server's (turnserver.Server.SetCredentials) and the PBX's
// (pbx.Server.SetAccounts). New allocations, registrations and calls
// authenticate against a; allocations, registrations and calls in
// progress go on (see those methods for what a removed user keeps). A
// server that is off is skipped. On error nothing is changed.
func (d *Daemon) Reload(a Accounts) error {
	if d.turn != nil {
		if _, err := turnserver.LoadUsers(a.TURNUsers, ""); err != nil {
			return err
		}
	}
	if d.pbx != nil && a.SIP == nil {
		return errors.New("sip: no accounts")
	}
	if d.turn != nil {
		if err := d.turn.SetCredentials(a.TURNUsers, a.TURNSecret); err != nil {
			return err
		}
	}
	if d.pbx != nil {
		if err := d.pbx.SetAccounts(a.SIP); err != nil {
			return err
		}
	}
	return nil
}
