package turnclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/natkit/natkit/pkg/render"
	"github.com/natkit/natkit/pkg/stunclient"
)

// Check phase budgets.
const (
	// DefaultCount is how many packets --peer sends through the relay.
	DefaultCount = 10
	// DefaultInterval spaces them (the 20 ms of an audio stream).
	DefaultInterval = 20 * time.Millisecond
	// drainWait is how long the check waits for echoes after the last send.
	drainWait = time.Second
	// releaseWait bounds the final release: a UDP transaction sends its
	// request at 0, 0.5 and 1.5 s within it.
	releaseWait = 2 * time.Second
)

// CheckOptions configure Check.
type CheckOptions struct {
	Client Config
	// ServerLabel is the server as the user gave it (for the report).
	ServerLabel string
	// Peer, when set, gets Count packets through the relay (an echo peer).
	Peer     netip.AddrPort
	Count    int
	Interval time.Duration
	Size     int
	// SendIndications relays with Send indications instead of a channel.
	SendIndications bool
	// KeepAllocation skips the final Refresh with LIFETIME 0.
	KeepAllocation bool
}

// Report is `natkit turn --json` (schema natkit.turn/v1).
type Report struct {
	render.Envelope
	Server         string       `json:"server"`
	ServerAddress  string       `json:"server_address"`
	Transport      string       `json:"transport"`
	Username       string       `json:"username"`
	Success        bool         `json:"success"`
	Realm          *string      `json:"realm"`
	Software       *string      `json:"software"`
	LocalAddress   *string      `json:"local_address"`
	MappedAddress  *string      `json:"mapped_address"`
	RelayedAddress *string      `json:"relayed_address"`
	LifetimeS      *int         `json:"lifetime_s"`
	Steps          []StepReport `json:"steps"`
	// With a peer:
	Peer       *string `json:"peer"`
	Permission *string `json:"permission"` // "granted" | "denied"
	// ErrorCode is the server's error code for the step that failed.
	ErrorCode *int     `json:"error_code"`
	Channel   *int     `json:"channel"`
	RTTMs     *float64 `json:"rtt_ms"` // median through the relay
	RTTMinMs  *float64 `json:"rtt_min_ms"`
	RTTMaxMs  *float64 `json:"rtt_max_ms"`
	// Count packets were to be sent to the peer, one every IntervalMs
	// (null without a peer); Sent counts those that left.
	Count      *int     `json:"count"`
	IntervalMs *float64 `json:"interval_ms"`
	Sent       int      `json:"sent"`
	Received   int      `json:"received"`
	LossPct    *float64 `json:"loss_pct"`
	DurationMs float64  `json:"duration_ms"`
	Error      *string  `json:"error"`
}

// StepReport is one request in the report.
type StepReport struct {
	Name      string   `json:"name"`
	Status    string   `json:"status"` // "ok" | "challenge" | "error" | "timeout"
	ErrorCode *int     `json:"error_code"`
	Reason    *string  `json:"reason"`
	RTTMs     *float64 `json:"rtt_ms"`
	Attempts  int      `json:"attempts"`
}

func ms(d time.Duration) *float64 {
	v := math.Round(float64(d)/float64(time.Microsecond)) / 1000
	return &v
}

func strp(s string) *string { return &s }
func intp(v int) *int       { return &v }

// Check runs the steps of `natkit turn` and returns the report. An error is
// returned only when the check could not start (no socket); a server that
// refuses is a report with Success false.
func Check(ctx context.Context, o CheckOptions) (rep Report, err error) {
	start := time.Now()
	rep = Report{Envelope: render.NewEnvelope("turn"), Server: o.ServerLabel, ServerAddress: o.Client.Server.String(),
		Transport: o.Client.Transport, Username: o.Client.Username, Steps: []StepReport{}}
	if rep.Transport == "" {
		rep.Transport = "udp"
	}
	c, err := Dial(ctx, o.Client)
	if err != nil {
		return rep, err
	}
	defer c.Close()
	rep.LocalAddress = strp(c.LocalAddr().String())
	fail := func(err error) {
		rep.Error = strp(err.Error())
		var se *ServerError
		if errors.As(err, &se) {
			rep.ErrorCode = intp(se.Code)
		} else if errors.Is(err, ErrUnauthorized) {
			rep.ErrorCode = intp(401)
		}
	}
	defer func() {
		for _, s := range c.Steps() {
			sr := StepReport{Name: s.Name, Status: "ok", Attempts: s.Attempts}
			switch {
			case s.Challenge:
				sr.Status = "challenge"
			case s.Code != 0:
				sr.Status = "error"
			case s.Err != nil:
				sr.Status = "error"
				if errors.Is(s.Err, stunclient.ErrTimeout) {
					sr.Status = "timeout"
				}
			}
			if s.Code != 0 {
				sr.ErrorCode = intp(s.Code)
				if s.Reason != "" { // a server may send no reason phrase: null, not ""
					sr.Reason = strp(s.Reason)
				}
			}
			if s.RTT > 0 {
				sr.RTTMs = ms(s.RTT)
			}
			rep.Steps = append(rep.Steps, sr)
		}
		if r := c.Realm(); r != "" {
			rep.Realm = strp(r)
		}
	}()
	a, err := c.Allocate(ctx)
	if err != nil {
		fail(err)
		rep.DurationMs = *ms(time.Since(start))
		return rep, nil
	}
	rep.RelayedAddress = strp(a.Relayed.String())
	rep.MappedAddress = strp(a.Mapped.String())
	rep.LifetimeS = intp(int(a.Lifetime / time.Second))
	if a.Software != "" {
		rep.Software = strp(a.Software)
	}
	rep.Success = true
	if lt, err := c.Refresh(ctx, max(a.Lifetime, DefaultLifetime)); err != nil {
		fail(err)
		rep.Success = false
	} else if lt > 0 {
		rep.LifetimeS = intp(int(lt / time.Second))
	}
	if o.Peer.IsValid() && rep.Success {
		rep.Peer = strp(o.Peer.String())
		relayToPeer(ctx, c, o, &rep, fail)
	}
	// The release (or, keeping the allocation, a refresh) also tells
	// whether the server is still there: one that stopped answering during
	// the check fails it, whatever the steps before said.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseWait)
	var lerr error
	if o.KeepAllocation {
		_, lerr = c.Refresh(rctx, max(a.Lifetime, DefaultLifetime))
	} else {
		lerr = c.Release(rctx)
	}
	cancel()
	if lerr != nil && rep.Success {
		rep.Success = false
		fail(fmt.Errorf("the server stopped answering during the check: %w", lerr))
	}
	rep.DurationMs = *ms(time.Since(start))
	return rep, nil
}

func relayToPeer(ctx context.Context, c *Client, o CheckOptions, rep *Report, fail func(error)) {
	if err := c.CreatePermission(ctx, o.Peer.Addr()); err != nil {
		rep.Permission = strp("denied")
		fail(err)
		rep.Success = false
		return
	}
	rep.Permission = strp("granted")
	var ch uint16
	if !o.SendIndications {
		var err error
		if ch, err = c.ChannelBind(ctx, 0, o.Peer); err != nil {
			fail(err)
			rep.Success = false
			return
		}
		rep.Channel = intp(int(ch))
	}
	count, interval, size := o.Count, o.Interval, o.Size
	if count <= 0 {
		count = DefaultCount
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	rep.Count, rep.IntervalMs = intp(count), ms(interval)
	size = max(size, 16)
	sentAt := make([]time.Time, count)
	var rtts []time.Duration
	seen := make([]bool, count)
	payload := make([]byte, size)
	buf := make([]byte, 0, size+8)
	// Packet i leaves at start + i×interval: the pace holds whatever the
	// echoes do, and a late wake-up does not shift the packets after it.
	start := time.Now()
	send := time.NewTimer(0)
	defer send.Stop()
	sendC := send.C
	var drain <-chan time.Time
	var sendErr error
	next, cut := 0, false
loop:
	for next < count || rep.Received < rep.Sent {
		select {
		case <-ctx.Done():
			cut = true
			break loop
		case <-drain:
			break loop
		case <-sendC:
			binary.BigEndian.PutUint64(payload[0:8], 0x6e61746b69742d31) // "natkit-1"
			binary.BigEndian.PutUint64(payload[8:16], uint64(next))
			sentAt[next] = time.Now()
			var err error
			if o.SendIndications {
				err = c.Send(o.Peer, payload)
			} else {
				err = c.SendChannelBuf(buf, ch, payload)
			}
			if err == nil {
				rep.Sent++
			} else if sendErr == nil {
				sendErr = err
			}
			next++
			if next == count {
				sendC, drain = nil, time.After(drainWait)
				continue
			}
			send.Reset(time.Until(start.Add(time.Duration(next) * interval)))
		case p := <-c.Packets():
			if len(p.Data) < 16 || binary.BigEndian.Uint64(p.Data[0:8]) != 0x6e61746b69742d31 {
				continue
			}
			i := binary.BigEndian.Uint64(p.Data[8:16])
			if i >= uint64(count) || seen[i] {
				continue
			}
			seen[i] = true
			rep.Received++
			rtts = append(rtts, p.At.Sub(sentAt[i]))
		}
	}
	if rep.Sent > 0 {
		loss := math.Round(float64(rep.Sent-rep.Received)/float64(rep.Sent)*1000) / 10
		rep.LossPct = &loss
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		rep.RTTMs, rep.RTTMinMs, rep.RTTMaxMs = ms(rtts[len(rtts)/2]), ms(rtts[0]), ms(rtts[len(rtts)-1])
	}
	switch {
	case rep.Sent < count:
		// A relay test that could not send what it was asked to says
		// nothing about the relay: a failure, whatever came back.
		rep.Success = false
		why := "the time limit ended"
		if sendErr != nil && !cut {
			why = sendErr.Error()
		} else if sendErr != nil {
			why += " (" + sendErr.Error() + ")"
		}
		rep.Error = strp(fmt.Sprintf("sent only %d of %d packets to the peer: %s", rep.Sent, count, why))
	case rep.Received == 0:
		rep.Success = false
		if rep.Error == nil {
			rep.Error = strp("no packet came back through the relay: is the peer an echo peer, and reachable from the server?")
		}
	}
}
