package sdp

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	psdp "github.com/pion/sdp/v3"
)

// ErrPorts is returned by Rewrite when ports does not have one entry per
// m= section.
var ErrPorts = errors.New("sdp: one port per media section needed")

// iceAttrs are the ICE attributes (RFC 8839) Rewrite removes: candidates
// name the phone's own addresses, which the anchor hides, and a default
// candidate that no longer matches c=/m= makes an ICE agent fail the
// stream (a=ice-mismatch) instead of using it.
var iceAttrs = map[string]bool{
	"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true,
	"ice-mismatch": true, "ice-pacing": true,
}

// Rewrite points desc's streams at a media anchor: for each m= section i
// with ports[i] != 0 and a port of its own (a rejected stream stays
// rejected), the port becomes ports[i], the section gets c= ip, a=rtcp
// (when present) becomes ports[i]+1, or ports[i] with a=rtcp-mux, at ip,
// and the ICE attributes go. A session-level c= becomes ip too. Entries 0
// leave their stream as it was.
func Rewrite(desc *psdp.SessionDescription, ip netip.Addr, ports []uint16) error {
	if len(ports) != len(desc.MediaDescriptions) {
		return fmt.Errorf("%w: %d sections, %d ports", ErrPorts, len(desc.MediaDescriptions), len(ports))
	}
	ip = ip.Unmap()
	at := "IP4"
	if ip.Is6() {
		at = "IP6"
	}
	conn := func() *psdp.ConnectionInformation {
		return &psdp.ConnectionInformation{NetworkType: "IN", AddressType: at, Address: &psdp.Address{Address: ip.String()}}
	}
	if desc.ConnectionInformation != nil {
		desc.ConnectionInformation = conn()
	}
	desc.Attributes = withoutICE(desc.Attributes)
	for i, md := range desc.MediaDescriptions {
		if ports[i] == 0 || md.MediaName.Port.Value == 0 {
			continue
		}
		md.MediaName.Port.Value = int(ports[i])
		md.ConnectionInformation = conn()
		md.Attributes = withoutICE(md.Attributes)
		mux := false
		for _, a := range md.Attributes {
			mux = mux || a.Key == "rtcp-mux"
		}
		rtcp := int(ports[i]) + 1
		if mux {
			rtcp = int(ports[i])
		}
		for k := range md.Attributes {
			if md.Attributes[k].Key == "rtcp" {
				md.Attributes[k].Value = strconv.Itoa(rtcp) + " IN " + at + " " + ip.String()
			}
		}
	}
	return nil
}

func withoutICE(attrs []psdp.Attribute) []psdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if !iceAttrs[a.Key] {
			out = append(out, a)
		}
	}
	return out
}
