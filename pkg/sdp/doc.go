// Package sdp is natkit's SDP layer: a tolerant parser in front of
// github.com/pion/sdp/v3, the facts a call needs from a description
// (addresses, codecs, direction, RTCP), the rewrite a media anchor makes,
// and G.711 offer/answer.
//
// Why a wrapper: pion's parser follows the RFC 8866 grammar to the letter
// and rejects the whole description on the first deviation, while real
// phones and PBXes send c= or b= after t=, bare LF line endings, no s= or
// t=, bandwidth types of their own, unknown media or transport tokens and
// lines that are not SDP at all. A PBX that answers such an INVITE with 400
// drops the call; one that reads it and answers with well-formed SDP
// completes it. Parse therefore rebuilds the description in RFC order from
// the lines it can use (see Parse for what it fixes and what it drops) and
// hands pion only what pion accepts, so that every caller works with pion's
// SessionDescription and Marshal always emits canonical SDP.
package sdp
