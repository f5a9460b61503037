package interoptest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestKamailioCfg(t *testing.T) {
	cfg, err := KamailioCfg(KamailioConfig{Port: 5999, Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen=udp:127.0.0.1:5999", "children=2", `modparam("usrloc", "db_mode", 0)`,
		`pv_www_authenticate("$td", "pw", "0")`, `pv_proxy_authenticate("$fd", "pw", "0")`, "record_route()",
		"loose_route()", "fix_nated_register()", `lookup("location")`, "t_relay()"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %s", want)
		}
	}
	cfg, err = KamailioCfg(KamailioConfig{Port: 5999, Password: "pw", NoInviteAuth: true, Children: 4})
	if err != nil || strings.Contains(cfg, "proxy_authenticate") || !strings.Contains(cfg, "children=4") {
		t.Errorf("NoInviteAuth, Children 4: %v\n%s", err, cfg)
	}
	for _, pw := range []string{`a"b`, `a\b`, "a\nb", "$var"} {
		if _, err := KamailioCfg(KamailioConfig{Port: 5999, Password: pw}); err == nil {
			t.Errorf("password %q accepted", pw)
		}
	}
}

// TestStartKamailio starts kamailio on a free port, sees it answer, and
// sees the test's cleanup end it and its children.
func TestStartKamailio(t *testing.T) {
	kam := Tool(t, "kamailio", "kamailio")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var k *Kamailio
	t.Run("start", func(t *testing.T) {
		k = StartKamailio(t, ctx, kam, t.TempDir(), KamailioConfig{Password: "pw"})
		if !Listening("udp", k.Port) {
			t.Errorf("kamailio does not hold %s", k.Addr)
		}
	})
	if k == nil {
		t.Fatal("not started")
	}
	select {
	case <-k.Exited():
	default:
		t.Fatal("kamailio still runs after its test's cleanup")
	}
	// A child holding the socket would outlive the main process.
	for end := time.Now().Add(5 * time.Second); Listening("udp", k.Port) && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if Listening("udp", k.Port) {
		out, _ := exec.Command("ss", "-Hanup", "sport = :"+strings.TrimPrefix(k.Addr, "127.0.0.1:")).CombinedOutput()
		t.Errorf("%s still held after kamailio ended: %s", k.Addr, out)
	}
}
