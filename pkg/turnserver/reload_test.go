package turnserver

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/turnclient"
)

// TestSetCredentials: after SetCredentials new allocations authenticate
// against the new users and REST secret only; an allocation made before
// keeps relaying, and refreshes while its user's password is unchanged. A
// bad user changes nothing. Swaps racing with allocations are safe (-race).
func TestSetCredentials(t *testing.T) {
	leaktest.Check(t)
	s := startServer(t, nil) // alice:wonderland, bob:builder
	echo := startEcho(t, s)
	bob, ctx := dial(t, s, "udp", "bob", "builder"), ctxT(t)
	if _, err := bob.Allocate(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := bob.ChannelBind(ctx, 0, echo)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetCredentials([]User{{Name: "x", Password: ""}}, ""); err == nil {
		t.Fatal("a user without a password was taken")
	}
	if _, err := dial(t, s, "udp", "alice", "wonderland").Allocate(ctx); err != nil {
		t.Fatalf("a refused SetCredentials changed the users: %v", err)
	}
	if err := s.SetCredentials([]User{{Name: "alice", Password: "looking-glass"}, {Name: "bob", Password: "builder"}, {Name: "carol", Password: "c"}}, "s3cret"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pass string
		ok         bool
	}{{"alice", "wonderland", false}, {"alice", "looking-glass", true}, {"carol", "c", true}, {"dave", "d", false}} {
		_, err := dial(t, s, "udp", tc.user, tc.pass).Allocate(ctx)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, turnclient.ErrUnauthorized) {
			t.Errorf("%s:%s allocates: %v, want ok %v", tc.user, tc.pass, err, tc.ok)
		}
	}
	user, pass := RESTCredential("s3cret", "erin", time.Now().Add(time.Hour))
	if _, err := dial(t, s, "udp", user, string(pass)).Allocate(ctx); err != nil {
		t.Errorf("the new REST secret: %v", err)
	}
	// bob's allocation, made before, goes on.
	if err := bob.SendChannel(ch, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-bob.Packets():
		if string(p.Data) != "still here" {
			t.Errorf("got %q", p.Data)
		}
	case <-time.After(3 * time.Second):
		t.Error("the allocation made before SetCredentials no longer relays")
	}
	if _, err := bob.Refresh(ctx, 5*time.Minute); err != nil {
		t.Errorf("refresh: %v", err)
	}

	// Swaps while clients allocate.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.SetCredentials([]User{{Name: "bob", Password: "builder"}, {Name: "carol", Password: "c"}}, "")
			time.Sleep(time.Millisecond)
		}
	}()
	for range 5 {
		c := dial(t, s, "udp", "carol", "c")
		if _, err := c.Allocate(ctx); err != nil {
			t.Errorf("carol during swaps: %v", err)
		}
		c.Close()
	}
	close(stop)
	wg.Wait()
}
