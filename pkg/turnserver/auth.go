package turnserver

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/natkit/natkit/pkg/stun"
)

// credential is what a verified USERNAME maps to.
type credential struct {
	key []byte
	// quotaKey is who the allocation counts against: the user name, or
	// the USER part of a REST username.
	quotaKey string
}

// authenticator maps usernames to long-term keys.
type authenticator struct {
	realm  string
	keys   map[string][]byte // static users: name → MD5(name:realm:password)
	secret []byte
	now    func() time.Time
}

func newAuthenticator(realm string, users []User, secret Secret, now func() time.Time) *authenticator {
	a := &authenticator{realm: realm, keys: make(map[string][]byte, len(users)), now: now}
	for _, u := range users {
		if k, ok := strings.CutPrefix(u.Password.reveal(), "0x"); ok && len(k) == 32 {
			if b, err := hex.DecodeString(k); err == nil {
				a.keys[u.Name] = b // a precomputed key, as turnadmin -k prints it
				continue
			}
		}
		a.keys[u.Name] = stun.LongTermKey(u.Name, realm, u.Password.reveal())
	}
	if secret != "" {
		a.secret = []byte(secret.reveal())
	}
	return a
}

// lookup returns the key for username in realm.
func (a *authenticator) lookup(username, realm string) (credential, bool) {
	if realm != a.realm {
		return credential{}, false
	}
	if k, ok := a.keys[username]; ok {
		return credential{key: k, quotaKey: username}, true
	}
	if a.secret == nil {
		return credential{}, false
	}
	expiry, user, err := ParseRESTUsername(username)
	if err != nil || a.now().After(expiry) {
		return credential{}, false
	}
	pass := RESTPassword(a.secret, username)
	if user == "" {
		user = username
	}
	return credential{key: stun.LongTermKey(username, realm, pass), quotaKey: user}, true
}

// ErrRESTUsername reports a username that is not EXPIRY[:USER].
var ErrRESTUsername = errors.New("not a TURN REST username (EXPIRY:USER, EXPIRY in Unix seconds)")

// ParseRESTUsername splits a TURN REST API username "EXPIRY:USER"
// (draft-uberti-behave-turn-rest-00 §2.2, as coturn implements it) into the
// expiry time and the user; USER may be empty or absent.
func ParseRESTUsername(username string) (time.Time, string, error) {
	ts, user, _ := strings.Cut(username, ":")
	if ts == "" || len(ts) > 12 {
		return time.Time{}, "", ErrRESTUsername
	}
	for _, c := range ts {
		if c < '0' || c > '9' {
			return time.Time{}, "", ErrRESTUsername
		}
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", ErrRESTUsername
	}
	return time.Unix(n, 0), user, nil
}

// RESTPassword is the password of a TURN REST username:
// base64(HMAC-SHA1(secret, username)).
func RESTPassword(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// RESTCredential makes a TURN REST credential for user valid until expiry,
// as the application server that shares the secret would.
func RESTCredential(secret Secret, user string, expiry time.Time) (username string, password Secret) {
	username = strconv.FormatInt(expiry.Unix(), 10)
	if user != "" {
		username += ":" + user
	}
	return username, Secret(RESTPassword([]byte(secret.reveal()), username))
}

func checkUser(u User) error {
	switch {
	case u.Name == "":
		return errors.New("user with an empty name")
	case len(u.Name) > 508:
		return fmt.Errorf("user name %q is longer than 508 bytes (RFC 8489 §14.3)", u.Name[:20]+"…")
	case strings.ContainsAny(u.Name, "\r\n"):
		return errors.New("user name contains a line break")
	case u.Password == "":
		return fmt.Errorf("user %q has an empty password", u.Name)
	}
	return nil
}

// ParseUsers reads a users file: one NAME:PASSWORD per line (the password
// may contain ':'; "0x" and 32 hex digits is a precomputed key as coturn's
// turnadmin -k prints it). Blank lines and lines starting with '#' are
// skipped. Errors name the line, never its content.
func ParseUsers(r io.Reader) ([]User, error) {
	var users []User
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64*1024)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		name, pass, ok := strings.Cut(s, ":")
		u := User{Name: strings.TrimSpace(name), Password: Secret(pass)}
		if !ok {
			return nil, fmt.Errorf("line %d: want NAME:PASSWORD", line)
		}
		if err := checkUser(u); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("line %d: user %q appears twice", line, u.Name)
		}
		seen[u.Name] = true
		users = append(users, u)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return users, nil
}

// LoadUsers is users followed by those of the users file (ParseUsers),
// when file is not "": the accounts a Config's Users and UsersFile give.
// Every user is checked and a name may appear once; errors name no
// password.
func LoadUsers(users []User, file string) ([]User, error) {
	all := append([]User(nil), users...)
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, configErrorf("users file: %v", err)
		}
		more, err := ParseUsers(f)
		f.Close()
		if err != nil {
			return nil, configErrorf("users file %s: %v", file, err)
		}
		all = append(all, more...)
	}
	for _, u := range all {
		if err := checkUser(u); err != nil {
			return nil, configErrorf("%v", err)
		}
	}
	return all, nil
}

// SetCredentials replaces the long-term users and the TURN REST secret
// ("" for none) at once, as on SIGHUP: every request authenticated after
// it returns uses the new set, a request being checked keeps the set it
// started with. Allocations made before are left alone: they keep
// relaying, and each of their later requests (Refresh, CreatePermission,
// ChannelBind) is checked against the new set, so that a removed user's
// allocation (or one whose password changed, until its client
// authenticates anew) ends when its lifetime runs out. The realm stays.
// On a bad user nothing changes.
func (s *Server) SetCredentials(users []User, secret Secret) error {
	for _, u := range users {
		if err := checkUser(u); err != nil {
			return configErrorf("%v", err)
		}
	}
	old := s.auth.Load()
	s.auth.Store(newAuthenticator(old.realm, users, secret, old.now))
	return nil
}
