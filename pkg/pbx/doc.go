// Package pbx is natkit's SIP server: a registrar and a stateful,
// record-routing, forking proxy (or a redirect server) for the accounts
// and domains it is given, on sipgo's transport and transaction layers.
//
// sipgo (v1.7.3) brings the wire: parser, transports, RFC 3261 transaction
// state machines (including the 200/487 answer to a matched CANCEL). It has
// no proxy core, no registrar and no server-side digest, so these are
// written here, named after the kamailio modules whose job they do:
//
//   - sanity.go (sanity, maxfwd): request validation of RFC 3261 §8.2 and
//     §16.3 on what sipgo's parser lets through — sipgo accepts most of the
//     RFC 4475 invalid messages;
//   - nat.go (nathelper): Via received/rport on every request, the
//     received address of a NATed binding as the next hop, keep-alives;
//   - proxy.go (tm, rr): the stateful proxy of §16: Record-Route with lr,
//     parallel forking, best-response choice (§16.7), CANCEL of the other
//     branches, loop detection (§16.3 step 4, §16.6 step 8);
//   - route.go (rr): loose routing of in-dialog requests through our
//     Record-Route (§16.4, §16.12), signed per dialog so that a forged
//     Route cannot make us a relay, and stateless forwarding of 2xx
//     retransmissions;
//   - handle.go: the request route — validation, then REGISTER, OPTIONS,
//     digest with 407, routing;
//   - stateless.go (sl, forward): over UDP, what needs no transaction is
//     handled in the read loop without sipgo's goroutine and transaction
//     per message — REGISTER, the 407 to an INVITE without credentials
//     and its ACK, the ACK of a 2xx and a BYE routed through us, and the
//     responses to what it forwarded; the INVITE with credentials and
//     every other request keep their transactions;
//   - invitetx.go (tm): a fork's INVITE over UDP to an IP address runs in
//     a client transaction of natkit's own, fed by the read loop, rather
//     than sipgo's, which costs three goroutine switches per response;
//   - server.go: sockets (UDP read and written with raw system calls,
//     pkg/rawudp, which spares the Go scheduler's sysmon a wake-up per
//     datagram), digest (pkg/sip/digest), the registrar
//     (pkg/pbx/registrar), rate limiting (pkg/ratelimit) and Stats;
//   - proxy.go's voicemail stage (Config.Voicemail): an unanswered, busy
//     or unregistered account's call goes on to the voicemail number;
//   - mwi.go: the message-summary notifier, RFC 3842
//     message waiting for the voicemail boxes (Config.Mailboxes).
//
// Known limits: one Record-Route even when caller and callee use
// different transports (no RFC 5658 double Record-Route); no strict-router
// compatibility (§16.4 Request-URI rewrite); keep-alives go from the first
// UDP socket and only to bindings registered since start (the location
// Store cannot list its AORs); sipgo keeps one pool entry per UDP source
// address for the life of the socket, so memory grows with the number of
// sources (the rate limit bounds their requests, not their number).
//
// Media anchoring is not here: a MediaAnchor, when configured, rewrites
// the SDP of forwarded offers and answers (anchor.Media on pkg/pbx/anchor;
// re-INVITEs in a dialog pass unanchored). Config.Static routes fixed
// numbers (the built-in services) to a fixed address without registration.
package pbx
