package registrar

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/natkit/natkit/pkg/leaktest"
	"github.com/natkit/natkit/pkg/pbx/location"
	"github.com/natkit/natkit/pkg/sip/digest"
)

// authRegister is how natkit serve will compose the two packages: digest
// first, then the registrar with the authenticated user.
func authRegister(v *digest.Verifier, r *Registrar) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		src, _ := netip.ParseAddrPort(req.Source())
		challenge := func(stale bool) {
			res := sip.NewResponseFromRequest(req, sip.StatusUnauthorized, "Unauthorized", nil)
			for _, c := range v.Challenge(src.Addr(), stale) {
				res.AppendHeader(sip.NewHeader(digest.WWWAuthenticate, c))
			}
			tx.Respond(res)
		}
		h := req.GetHeader(digest.Authorization)
		if h == nil {
			challenge(false)
			return
		}
		switch got := v.Verify(req.Method.String(), h.Value(), src.Addr()); got.Outcome {
		case digest.Accepted:
			res, _ := r.Register(context.Background(), req, got.User)
			tx.Respond(res)
		case digest.Stale:
			challenge(true)
		case digest.Rejected:
			challenge(false)
		case digest.Throttled:
			tx.Respond(sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil))
		default:
			tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Request", nil))
		}
	}
}

// TestSipgoClient: a real sipgo client (Client.Do, then DoDigestAuth on the
// 401) registers over loopback UDP with a sipgo server running digest and
// the registrar; a wrong password gets 401 again; the binding holds the
// client's source address.
func TestSipgoClient(t *testing.T) {
	leaktest.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	store := location.NewMemory(0)
	reg, err := New(Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	v, err := digest.New(digest.Config{Realm: "natkit.test", Store: digest.Passwords{"alice": "wonderland"}})
	if err != nil {
		t.Fatal(err)
	}
	sua, _ := sipgo.NewUA()
	defer sua.Close()
	srv, _ := sipgo.NewServer(sua)
	srv.OnRegister(authRegister(v, reg))
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUDP(pc)
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port

	cua, _ := sipgo.NewUA(sipgo.WithUserAgent("alice"))
	defer cua.Close()
	client, err := sipgo.NewClient(cua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	register := func(pw string) *sip.Response {
		t.Helper()
		var to sip.Uri
		sip.ParseUri("sip:alice@127.0.0.1:"+strconv.Itoa(port), &to)
		req := sip.NewRequest(sip.REGISTER, to)
		req.AppendHeader(sip.NewHeader("Contact", "<sip:alice@127.0.0.1:5099>"))
		res, err := client.Do(ctx, req, sipgo.ClientRequestRegisterBuild)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != sip.StatusUnauthorized {
			t.Fatalf("first answer %d, want 401", res.StatusCode)
		}
		res, err = client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "alice", Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := register("wonderland"); res.StatusCode != sip.StatusOK || res.Contact() == nil {
		t.Fatalf("right password: %d %s\n%s", res.StatusCode, res.Reason, res)
	}
	bs, _ := store.Get(ctx, "sip:alice@127.0.0.1")
	if len(bs) != 1 || bs[0].Received.Addr() != netip.MustParseAddr("127.0.0.1") || bs[0].Received.Port() == 0 {
		t.Fatalf("stored %+v", bs)
	}
	if res := register("guess"); res.StatusCode != sip.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", res.StatusCode)
	}
}
