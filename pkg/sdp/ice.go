package sdp

import (
	"strings"

	psdp "github.com/pion/sdp/v3"
)

// ICE is the ICE description (RFC 8839 §5) of one media section: the
// agent's credentials and its candidates. Candidates are the a=candidate
// values (foundation, component, transport, priority, address, port, typ
// ...), kept as text: natkit hands them to pion/ice, which parses them.
type ICE struct {
	Ufrag      string
	Pwd        string
	Candidates []string
}

// AddICE writes ice into media section i of desc: a=ice-ufrag, a=ice-pwd,
// one a=candidate per candidate and a=end-of-candidates (natkit gathers
// before it offers or answers: it does not trickle, RFC 8840).
func AddICE(desc *psdp.SessionDescription, i int, ice ICE) {
	if i < 0 || i >= len(desc.MediaDescriptions) {
		return
	}
	md := desc.MediaDescriptions[i]
	md.Attributes = append(md.Attributes, psdp.NewAttribute("ice-ufrag", ice.Ufrag), psdp.NewAttribute("ice-pwd", ice.Pwd))
	for _, c := range ice.Candidates {
		md.Attributes = append(md.Attributes, psdp.NewAttribute("candidate", strings.TrimPrefix(c, "candidate:")))
	}
	md.Attributes = append(md.Attributes, psdp.NewPropertyAttribute("end-of-candidates"))
}

// ICEOf reads the ICE description of media section i of desc. ok is false
// when the section has no credentials (RFC 8839 §5.4: ice-ufrag and ice-pwd
// at media level, or at session level for every section) — a peer that
// does not do ICE. Candidates other than component 1 (RTP; natkit
// multiplexes RTCP, RFC 5761) are left out.
func ICEOf(desc *psdp.SessionDescription, i int) (ice ICE, ok bool) {
	if desc == nil || i < 0 || i >= len(desc.MediaDescriptions) {
		return ICE{}, false
	}
	for _, a := range desc.Attributes {
		switch a.Key {
		case "ice-ufrag":
			ice.Ufrag = strings.TrimSpace(a.Value)
		case "ice-pwd":
			ice.Pwd = strings.TrimSpace(a.Value)
		}
	}
	for _, a := range desc.MediaDescriptions[i].Attributes {
		switch a.Key {
		case "ice-ufrag":
			ice.Ufrag = strings.TrimSpace(a.Value)
		case "ice-pwd":
			ice.Pwd = strings.TrimSpace(a.Value)
		case "candidate":
			v := strings.TrimSpace(a.Value)
			if f := strings.Fields(v); len(f) >= 2 && f[1] == "1" {
				ice.Candidates = append(ice.Candidates, v)
			}
		}
	}
	return ice, ice.Ufrag != "" && ice.Pwd != ""
}

// HasICE reports whether any media section of desc carries ICE
// credentials: its endpoints connect by themselves (RFC 8445), and a media
// anchor that rewrote the addresses would make them fail (a=ice-mismatch).
func HasICE(desc *psdp.SessionDescription) bool {
	for i := range desc.MediaDescriptions {
		if _, ok := ICEOf(desc, i); ok {
			return true
		}
	}
	return false
}
