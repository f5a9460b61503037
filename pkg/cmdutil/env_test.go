package cmdutil

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlagsFromEnv(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	port := fs.Int("stun-port", 3478, "")
	given := fs.Int("sip-port", 5060, "")
	idle := fs.Duration("tcp-idle-timeout", 30*time.Second, "")
	noTURN := fs.Bool("no-turn", false, "")
	users := fs.StringArray("user", nil, "")
	realm := fs.String("realm", "natkit", "")
	if err := fs.Parse([]string{"--sip-port", "5070"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"NATKIT_STUN_PORT": "3479", "NATKIT_SIP_PORT": "9999", "NATKIT_TCP_IDLE_TIMEOUT": "1m",
		"NATKIT_NO_TURN": "true", "NATKIT_USER": "alice:a, bob:b", "NATKIT_REALM": "",
	}
	if err := FlagsFromEnv(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if *port != 3479 || *given != 5070 || *idle != time.Minute || !*noTURN || *realm != "natkit" ||
		strings.Join(*users, " ") != "alice:a bob:b" {
		t.Errorf("stun-port %d sip-port %d idle %v no-turn %v users %q realm %q", *port, *given, *idle, *noTURN, *users, *realm)
	}
	if !fs.Changed("stun-port") || fs.Changed("realm") {
		t.Error("a flag set from the environment must count as given (a config file does not override it), an empty variable not")
	}

	fs = pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.Int("stun-port", 3478, "")
	fs.String("auth-secret", "", "")
	err := FlagsFromEnv(fs, func(k string) string {
		return map[string]string{"NATKIT_STUN_PORT": "abc", "NATKIT_AUTH_SECRET": "s3cret"}[k]
	})
	if err == nil || ExitCode(err, true) != ExitUsage || !strings.Contains(err.Error(), "$NATKIT_STUN_PORT") ||
		!strings.Contains(err.Error(), "whole number") || strings.Contains(err.Error(), "abc") {
		t.Errorf("bad value: %v", err)
	}
	if EnvName("sip-tls-port") != "NATKIT_SIP_TLS_PORT" {
		t.Error(EnvName("sip-tls-port"))
	}
}
