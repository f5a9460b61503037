// Command kamcfg prints the kamailio.cfg of interoptest.StartKamailio, so
// that scripts/bench-sip.sh runs kamailio in the role natkit's tests give
// it: registrar and stateful proxy on 127.0.0.1 with digest auth,
// Record-Route and nathelper.
//
//	go run ./scripts/kamcfg -port 5060 -password secret -children 2 >kamailio.cfg
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/natkit/natkit/pkg/interoptest"
)

func main() {
	var c interoptest.KamailioConfig
	flag.IntVar(&c.Port, "port", 5060, "UDP port on 127.0.0.1")
	flag.StringVar(&c.Password, "password", "", "every user's password")
	flag.IntVar(&c.Children, "children", 2, "UDP worker processes")
	flag.BoolVar(&c.NoInviteAuth, "no-invite-auth", false, "do not challenge INVITE")
	flag.Parse()
	cfg, err := interoptest.KamailioCfg(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kamcfg:", err)
		os.Exit(2)
	}
	fmt.Print(cfg)
}
