package turn

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/natkit/natkit/pkg/cmdutil"
	"github.com/natkit/natkit/pkg/iostreams"
	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/turnclient"
)

// DefaultEchoPort is where `natkit turn echo` listens without --listen:
// next to natkit's own ports but none of them (STUN and TURN 3478, STUN's
// alternate port 3479, rendezvous 3480; coturn's turnutils_peer takes 3480
// too), so that an echo peer runs beside `natkit serve` on one host.
const DefaultEchoPort = 3481

// EchoOptions are `natkit turn echo`'s.
type EchoOptions struct {
	IO          *iostreams.IOStreams
	Globals     *cmdutil.GlobalOptions
	WithTimeout func(context.Context, time.Duration) (context.Context, context.CancelFunc)

	Listen string
	// Ready, when set, gets the bound address (tests).
	Ready func(netip.AddrPort)

	listen netip.AddrPort
}

// EchoStartup is the JSON document `natkit turn echo --json` prints once
// listening (schema natkit.turn-echo/v1); the echo then runs until stopped.
type EchoStartup struct {
	render.Envelope
	Address string `json:"address"`
}

// NewCmdEcho returns `natkit turn echo`.
func NewCmdEcho(f *cmdutil.Factory, runF func(*EchoOptions) error) *cobra.Command {
	o := &EchoOptions{IO: f.IOStreams, Globals: f.Globals, WithTimeout: f.WithTimeout}
	cmd := &cobra.Command{
		Use:   "echo [--listen IP:PORT]",
		Short: "Run a UDP echo peer for TURN tests",
		Long: `Run a UDP echo peer: every datagram is sent back to where it came from. Point
'natkit turn --peer' and 'natkit turn bench --peer' at it; it must be reachable
from the TURN server. It runs until interrupted (or --timeout). The default port,
3481, is free beside natkit serve's (3478, 3479, 3480).`,
		Example: `  natkit turn echo
  natkit turn echo --listen [::]:3481`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ap, err := netip.ParseAddrPort(o.Listen)
			if err != nil {
				return cmdutil.UsageErrorf("--listen %q: give IP:PORT, e.g. 0.0.0.0:%d", o.Listen, DefaultEchoPort)
			}
			o.listen = ap
			if runF != nil {
				return runF(o)
			}
			return echoRun(cmd.Context(), o)
		},
	}
	cmd.Flags().StringVar(&o.Listen, "listen", "0.0.0.0:"+strconv.Itoa(DefaultEchoPort), "listen on `IP:PORT` (the default port is not the rendezvous server's 3480)")
	return cmd
}

func echoRun(ctx context.Context, o *EchoOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := o.WithTimeout(ctx, 0)
	defer cancel()
	pc, err := net.ListenPacket("udp", o.listen.String())
	if err != nil {
		return cmdutil.UsageErrorf("--listen %s: %v", o.listen, err)
	}
	defer pc.Close()
	addr := pc.LocalAddr().String()
	fmt.Fprintf(o.IO.ErrOut, "turn echo: listening on udp %s\n", addr)
	if o.Globals.JSON {
		if err := render.JSON(o.IO.Out, EchoStartup{Envelope: render.NewEnvelope("turn-echo"), Address: addr}); err != nil {
			return err
		}
	}
	if o.Ready != nil {
		o.Ready(netip.MustParseAddrPort(addr))
	}
	var st turnclient.EchoStats
	err = turnclient.Echo(ctx, pc, &st)
	fmt.Fprintf(o.IO.ErrOut, "turn echo: %d packets echoed\n", st.Packets.Load())
	return err
}
