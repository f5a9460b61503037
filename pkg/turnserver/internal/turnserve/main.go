// Command turnserve runs natkit's TURN server alone, for interop tests and
// scripts/bench-turn.sh until `natkit serve` carries it. Flags mirror the
// ones `natkit serve` will take.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/natkit/natkit/pkg/turnserver"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var users, allow multi
	listen := flag.String("listen", "127.0.0.1:3478", "UDP and TCP `IP:PORT`")
	realm := flag.String("realm", "natkit", "realm")
	flag.Var(&users, "user", "NAME:PASSWORD (repeatable)")
	usersFile := flag.String("users-file", "", "users file")
	secret := flag.String("auth-secret", "", "TURN REST shared secret")
	flag.Var(&allow, "allow-peer", "CIDR (repeatable)")
	publicIP := flag.String("public-ip", "", "advertised relay IP")
	relayPorts := flag.String("relay-ports", "49152-65535", "MIN-MAX")
	userQuota := flag.Int("user-quota", 0, "allocations per user (0: default)")
	totalQuota := flag.Int("total-quota", 0, "allocations in all (0: default)")
	sockets := flag.Int("udp-sockets", 0, "SO_REUSEPORT sockets (0: GOMAXPROCS)")
	challengeRate := flag.Float64("challenge-rate", 0, "401s per second per source (0: default, <0: unlimited)")
	flag.Parse()

	cfg := turnserver.Config{Realm: *realm, UsersFile: *usersFile, AuthSecret: turnserver.Secret(*secret),
		UserQuota: *userQuota, TotalQuota: *totalQuota, UDPSockets: *sockets, ChallengeRate: *challengeRate,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	var err error
	if cfg.Addr, err = netip.ParseAddrPort(*listen); err != nil {
		fail(err)
	}
	for _, u := range users {
		n, p, _ := strings.Cut(u, ":")
		cfg.Users = append(cfg.Users, turnserver.User{Name: n, Password: turnserver.Secret(p)})
	}
	for _, a := range allow {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			fail(err)
		}
		cfg.Allow = append(cfg.Allow, p)
	}
	if *publicIP != "" {
		if cfg.PublicIP, err = netip.ParseAddr(*publicIP); err != nil {
			fail(err)
		}
	}
	lo, hi, _ := strings.Cut(*relayPorts, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil {
		fail(fmt.Errorf("--relay-ports %q: give MIN-MAX", *relayPorts))
	}
	cfg.RelayPorts = turnserver.PortRange{Min: uint16(a), Max: uint16(b)}
	s, err := turnserver.New(cfg)
	if err != nil {
		fail(err)
	}
	for _, l := range s.Addrs() {
		fmt.Fprintln(os.Stderr, "turn: listening on", l)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// SIGUSR1 prints the counters and memory (for the benchmark).
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGUSR1)
		for range ch {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Fprintf(os.Stderr, "stats %+v heap_inuse=%d goroutines=%d at=%s\n", s.Stats(), ms.HeapInuse, runtime.NumGoroutine(), time.Now().Format(time.RFC3339))
		}
	}()
	if err := s.Serve(ctx); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "turnserve:", err)
	os.Exit(2)
}
