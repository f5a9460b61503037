package serve

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/natkit/natkit/pkg/daemon"
	"github.com/natkit/natkit/pkg/sip/digest"
	"github.com/natkit/natkit/pkg/turnserver"
)

// reloadable are the settings SIGHUP applies to the running servers: the
// accounts and the TLS certificate. Any other setting that changed needs a
// restart, and the reload says which.
var reloadable = map[string]bool{"user": true, "users-file": true, "auth-secret": true, "tls-cert": true, "tls-key": true}

// flagValue is a flag as the command line or the environment set it.
type flagValue struct {
	name   string
	values []string
}

// givenFlags are the flags of fs set so far (Changed): before the config
// file is applied, those of the command line and the environment.
func givenFlags(fs *pflag.FlagSet) []flagValue {
	var out []flagValue
	fs.Visit(func(f *pflag.Flag) {
		v := flagValue{name: f.Name}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v.values = sv.GetSlice()
		} else {
			v.values = []string{f.Value.String()}
		}
		out = append(out, v)
	})
	return out
}

// flagValues are the values of every flag of fs, for comparison only:
// they hold passwords, and are never shown.
func flagValues(fs *pflag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) { m[f.Name] = f.Value.String() })
	return m
}

// reload is what SIGHUP does: it reads the settings again as at startup —
// the command line and the environment as they were, the --config file
// and the users file afresh, the certificate and key files — checks them
// all, and only then gives the running servers the new accounts (TURN's
// users and REST secret, the PBX's accounts) and the new certificate.
// Allocations, registrations, calls and TLS connections in progress go on.
// A bad setting changes nothing: one error line, and serving goes on.
// Settings that changed but cannot change while serving (ports,
// addresses, ...) get one warning line naming them. No password is
// logged.
func (o *Options) reload(d *daemon.Daemon) error {
	o.reloadMu.Lock()
	defer o.reloadMu.Unlock()
	if err := o.reload1(d); err != nil {
		o.Logger.Error("serve: reload failed, the running configuration is kept", "err", err.Error())
		return err
	}
	return nil
}

func (o *Options) reload1(d *daemon.Daemon) error {
	n := &Options{IO: o.IO, Globals: o.Globals}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addFlags(fs, n)
	for _, f := range o.fixed {
		fl := fs.Lookup(f.name)
		if fl == nil {
			continue // the root command's (--json, -v, ...): in Globals
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			if err := sv.Replace(f.values); err != nil {
				return fmt.Errorf("--%s: %v", f.name, err)
			}
			fl.Changed = true
			continue
		}
		if err := fs.Set(f.name, f.values[0]); err != nil {
			return fmt.Errorf("--%s: %v", f.name, err)
		}
	}
	if err := n.validate(fs); err != nil {
		return err
	}
	// What needs a restart.
	now := flagValues(fs)
	var restart []string
	for name, v := range now {
		if !reloadable[name] && o.running[name] != v {
			restart = append(restart, name)
		}
	}
	if (o.cert == nil) != (n.cert == nil) {
		restart = append(restart, "tls-cert", "tls-key") // TLS on or off: new listeners
	}
	var acc daemon.Accounts
	turnUsers, sipAccounts := 0, 0
	if d.TURN() != nil {
		if tc := n.Daemon.TURN; tc != nil {
			users, err := turnserver.LoadUsers(tc.Users, tc.UsersFile)
			if err != nil {
				return err
			}
			acc.TURNUsers, acc.TURNSecret = users, tc.AuthSecret
			turnUsers = len(users)
		} // else no credentials are left (--no-turn is in restart): every request is refused
	} else if n.Daemon.TURN != nil && !slices.Contains(restart, "no-turn") {
		restart = append(restart, "turn (off until a restart)")
	}
	if d.PBX() != nil {
		var accounts digest.Passwords
		if pc := n.Daemon.PBX; pc != nil {
			accounts = pc.Accounts.(digest.Passwords)
			if old := o.Daemon.PBX; !reflect.DeepEqual(old.Groups, pc.Groups) {
				restart = append(restart, "sip-group (call groups)")
			}
		} else {
			a, err := n.sipAccounts()
			if err != nil {
				return err
			}
			accounts = a
		}
		acc.SIP, sipAccounts = accounts, len(accounts)
	} else if n.Daemon.PBX != nil && !slices.Contains(restart, "sip-port") {
		restart = append(restart, "sip (off until a restart)")
	}
	if err := d.Reload(acc); err != nil {
		return err
	}
	certs := 0
	if o.cert != nil && n.cert != nil {
		o.cert.Set(*n.cert.Certificate())
		certs = 1
	}
	for name := range reloadable {
		if certs == 0 && (name == "tls-cert" || name == "tls-key") {
			continue
		}
		o.running[name] = now[name]
	}
	if len(restart) > 0 {
		slices.Sort(restart)
		o.Logger.Warn("serve: reload: changed settings need a restart to apply", "keys", strings.Join(restart, ","))
	}
	o.Logger.Info("serve: reloaded", "turn_users", turnUsers, "turn_rest", acc.TURNSecret != "", "sip_accounts", sipAccounts, "certs", certs)
	return nil
}
