package pbx

import (
	"errors"

	"github.com/natkit/natkit/pkg/sip/digest"
)

// Accounts returns the accounts the server authenticates with now.
func (s *Server) Accounts() digest.Store { return *s.accounts.Load() }

// SetAccounts replaces the accounts, as on SIGHUP: every REGISTER,
// INVITE or other request challenged or checked after it returns uses the
// new set (a nonce issued before stays valid; the password it is
// answered with is the new one). Registrations, calls and dialogs in
// progress are left alone: a removed user's registration lasts until it
// expires or is refreshed (which then fails), calls to it still reach the
// phone meanwhile, and its calls go on until hung up. Call groups are not changed.
func (s *Server) SetAccounts(a digest.Store) error {
	if a == nil {
		return errors.New("pbx: no accounts")
	}
	s.accounts.Store(&a)
	return nil
}

// swapStore is the digest.Store of the server's verifier: it reads the
// accounts of the moment.
type swapStore struct{ s *Server }

func (w swapStore) HA1(user, realm string, alg digest.Algorithm) ([]byte, bool) {
	return w.s.Accounts().HA1(user, realm, alg)
}
