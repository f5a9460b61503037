package services

import "sync/atomic"

// Stats counts the server's calls and media since New.
type Stats struct {
	Calls         map[Service]uint64 `json:"calls"`               // INVITEs taken, by service
	Active        int64              `json:"active"`              // calls in progress
	NotFound      uint64             `json:"not_found"`           // INVITEs to other numbers (404)
	Rejected      uint64             `json:"rejected"`            // INVITEs refused otherwise (488, 503, reject=)
	Canceled      uint64             `json:"canceled"`            // CANCELed before the answer (487)
	MediaTimeouts uint64             `json:"media_timeouts"`      // calls ended for lack of RTP
	Reinvites     uint64             `json:"reinvites"`           // in-dialog INVITEs answered
	RTPReceived   uint64             `json:"rtp_received"`        // datagrams on the media ports (RTP and RTCP)
	RTPSent       uint64             `json:"rtp_sent"`            // datagrams sent from them
	Digits        uint64             `json:"digits"`              // DTMF digits received (RFC 4733, SIP INFO)
	IVRChoices    uint64             `json:"ivr_choices"`         // 5000: digits that led to a service
	IVRInvalid    uint64             `json:"ivr_invalid"`         // 5000: digits of no service here
	ConfJoins     uint64             `json:"conference_joins"`    // 3000–3399: participants who joined a room
	ConfMutes     uint64             `json:"conference_mutes"`    // mute and unmute toggles
	Rooms         int                `json:"conference_rooms"`    // rooms with someone in them
	VMMessages    uint64             `json:"voicemail_messages"`  // 4000: messages stored
	VMRecording   int64              `json:"voicemail_recording"` // messages being recorded
	VMListens     uint64             `json:"voicemail_listens"`   // boxes opened to listen
	VMBadPIN      uint64             `json:"voicemail_bad_pin"`   // wrong PINs entered
	VMRefused     uint64             `json:"voicemail_refused"`   // listening refused (no identity)
}

type counters struct {
	calls         map[Service]*atomic.Uint64
	active        atomic.Int64
	notFound      atomic.Uint64
	rejected      atomic.Uint64
	canceled      atomic.Uint64
	mediaTimeouts atomic.Uint64
	reinvites     atomic.Uint64
	rtpIn, rtpOut atomic.Uint64
	digits        atomic.Uint64
	ivrChoices    atomic.Uint64
	ivrInvalid    atomic.Uint64
	confJoins     atomic.Uint64
	confMutes     atomic.Uint64
	vmMessages    atomic.Uint64
	vmRecording   atomic.Int64
	vmListens     atomic.Uint64
	vmBadPIN      atomic.Uint64
	vmRefused     atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Calls:         map[Service]uint64{},
		Active:        s.st.active.Load(),
		NotFound:      s.st.notFound.Load(),
		Rejected:      s.st.rejected.Load(),
		Canceled:      s.st.canceled.Load(),
		MediaTimeouts: s.st.mediaTimeouts.Load(),
		Reinvites:     s.st.reinvites.Load(),
		RTPReceived:   s.st.rtpIn.Load(),
		RTPSent:       s.st.rtpOut.Load(),
		Digits:        s.st.digits.Load(),
		IVRChoices:    s.st.ivrChoices.Load(),
		IVRInvalid:    s.st.ivrInvalid.Load(),
		ConfJoins:     s.st.confJoins.Load(),
		ConfMutes:     s.st.confMutes.Load(),
		Rooms:         s.Rooms(),
		VMMessages:    s.st.vmMessages.Load(),
		VMRecording:   s.st.vmRecording.Load(),
		VMListens:     s.st.vmListens.Load(),
		VMBadPIN:      s.st.vmBadPIN.Load(),
		VMRefused:     s.st.vmRefused.Load(),
	}
	for svc, n := range s.st.calls {
		st.Calls[svc] = n.Load()
	}
	return st
}
