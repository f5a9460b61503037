package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/stun"
	"github.com/natkit/natkit/pkg/stunserver"
)

func checkLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDaemon(t *testing.T) {
	checkLeaks(t)
	d, err := New(Config{
		STUN:     &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")},
		HTTPAddr: "127.0.0.1:0",
		Version:  "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	ls := d.Listeners()
	var got []string
	var stunAddr, httpAddr netip.AddrPort
	for _, l := range ls {
		got = append(got, l.Service+"/"+l.Network)
		switch {
		case l.Service == "stun" && l.Network == "udp":
			stunAddr = l.Addr
		case l.Service == "http":
			httpAddr = l.Addr
		}
	}
	if strings.Join(got, " ") != "stun/udp stun/udp stun/tcp http/tcp" {
		t.Fatalf("listeners %v", got)
	}
	if !strings.HasPrefix(ls[0].String(), "stun: listening on udp 127.0.0.1:") || !strings.HasSuffix(ls[0].String(), " (primary)") ||
		!strings.HasSuffix(ls[1].String(), " (alt-port)") || ls[2].Role != "" {
		t.Errorf("listener lines %q", ls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()

	// One Binding request, so that a counter moves.
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(stunAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(stun.NewBuilder(nil, stun.BindingRequest, stun.MagicCookie, stun.TransactionID{1}).Bytes())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 512)); err != nil {
		t.Fatal(err)
	}

	base := "http://" + httpAddr.String()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`natkit_build_info{version="test"} 1`,
		`natkit_stun_messages_total{transport="udp",verdict="answered"} 1`,
		`# TYPE natkit_stun_messages_total counter`,
		`natkit_stun_connections_open 0`,
		`natkit_stun_info{rfc5780="port-only"} 1`,
		`natkit_stun_messages_total{transport="udp",verdict="drop_rate_limit"} 0`,
		`natkit_stun_udp_changed_total 0`,
		`natkit_stun_udp_response_port_total 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	checkExposition(t, body)
	if code, _ := get(t, base+"/nothing"); code != 404 {
		t.Errorf("/nothing: %d", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close after Serve: %v", err)
	}
	if err := d.Serve(context.Background()); err == nil {
		t.Error("second Serve succeeded")
	}
}

// checkExposition checks the text format line by line: HELP and TYPE
// before samples, sample lines "name{labels} value".
func checkExposition(t *testing.T, body string) {
	t.Helper()
	typed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Errorf("bad TYPE line %q", line)
				continue
			}
			typed[f[2]] = true
		default:
			name := line[:strings.IndexAny(line, "{ ")]
			if !typed[name] {
				t.Errorf("sample before its TYPE: %q", line)
			}
			if f := strings.Fields(line[strings.LastIndex(line, " "):]); len(f) != 1 {
				t.Errorf("bad sample %q", line)
			}
		}
	}
}

func TestNewErrors(t *testing.T) {
	checkLeaks(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing", Config{}, "no server"},
		{"http port in use", Config{STUN: &stunserver.Config{Addr: netip.MustParseAddrPort("127.0.0.1:0")}, HTTPAddr: busy.Addr().String()}, "cannot listen on http"},
		{"stun bad", Config{STUN: &stunserver.Config{NoUDP: true, NoTCP: true}}, "every transport is off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.cfg)
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}
