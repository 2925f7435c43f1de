package watch

import (
	"fmt"
	"time"

	"github.com/synscope/synscope/internal/routeloss"
)

// Reason says why a default route was lost: routeloss's vocabulary, which
// doctor speaks too.
type Reason = routeloss.Reason

// The reasons, in the order attribute tries them.
const (
	ReasonDeletedByProcess  = routeloss.DeletedByProcess
	ReasonDeletedByProgram  = routeloss.DeletedByProgram
	ReasonForwardingEnabled = routeloss.ForwardingEnabled
	ReasonLinkDeleted       = routeloss.LinkDeleted
	ReasonLinkDown          = routeloss.LinkDown
	ReasonCarrierLost       = routeloss.CarrierLost
	ReasonAddressRemoved    = routeloss.AddressRemoved
	ReasonRAExpired         = routeloss.RAExpired
	ReasonUnknown           = routeloss.Unknown
)

// Reasons lists every reason (each gets a losses series initialised to 0).
var Reasons = routeloss.Reasons

// correlationWindow is how far back a happening can explain a loss. The
// kernel sends the cause and the deletion within milliseconds; a second
// leaves room for a loaded host without blaming stale news.
const correlationWindow = time.Second

// hapKind is a kind of happening that can take a default route away.
type hapKind int

const (
	hapLinkDown hapKind = iota + 1
	hapCarrierLost
	hapLinkDeleted
	hapAddrRemoved
	hapForwardingOn
)

// happening is one namespace event kept for correlation.
type happening struct {
	At      time.Time
	Kind    hapKind
	Ifindex int // netconfIfindexAll / netconfIfindexDefault for netconf
	Family  int // address and netconf news; 0 for links
}

// history is a bounded ring of recent happenings.
type history struct {
	items []happening
	next  int
}

const historySize = 256

func (h *history) add(x happening) {
	if len(h.items) < historySize {
		h.items = append(h.items, x)
		return
	}
	h.items[h.next] = x
	h.next = (h.next + 1) % historySize
}

// since returns the happenings at or after t.
func (h *history) since(t time.Time) []happening {
	var out []happening
	for _, x := range h.items {
		if !x.At.Before(t) {
			out = append(out, x)
		}
	}
	return out
}

// lossInput is everything attribute looks at for one lost route.
type lossInput struct {
	Route Route
	Now   time.Time
	// PortID is the nlmsg_pid of the RTM_DELROUTE (0: the kernel itself
	// removed it, or the loss was found by a dump or at expiry).
	PortID uint32
	// Process names the owner of PortID ("comm[pid]"), "" when not found.
	Process string
	// Link is the route's device now; LinkKnown is false when it is gone.
	Link      Link
	LinkKnown bool
	// Recent are the happenings within correlationWindow before Now.
	Recent []happening
}

// attribute names the reason for a loss, with a short detail for the log.
// Pure: every input is in in.
func attribute(in lossInput) (Reason, string) {
	r := in.Route
	if in.PortID != 0 {
		if in.Process != "" {
			return ReasonDeletedByProcess, "deleted by " + in.Process
		}
		return ReasonDeletedByProgram, fmt.Sprintf("deleted through netlink port %d; its process was not found (exited or not visible)", in.PortID)
	}
	var linkDel, linkDown, carrier, addr bool
	for _, h := range in.Recent {
		switch h.Kind {
		case hapForwardingOn:
			if r.Family == 6 && h.Family == 6 && r.Protocol == protoRA &&
				(h.Ifindex == r.Ifindex || h.Ifindex == netconfIfindexAll) {
				return ReasonForwardingEnabled, "IPv6 forwarding was switched on while accept_ra was not 2: the kernel purged the RA-learned default route"
			}
		case hapLinkDeleted:
			linkDel = linkDel || h.Ifindex == r.Ifindex
		case hapLinkDown:
			linkDown = linkDown || h.Ifindex == r.Ifindex
		case hapCarrierLost:
			carrier = carrier || h.Ifindex == r.Ifindex
		case hapAddrRemoved:
			addr = addr || h.Ifindex == r.Ifindex
		}
	}
	switch {
	case linkDel || (!in.LinkKnown && r.Ifindex != 0):
		return ReasonLinkDeleted, "the route's device was deleted"
	case linkDown || (in.LinkKnown && !in.Link.Up):
		return ReasonLinkDown, "the route's device was set administratively down"
	case carrier || (in.LinkKnown && !in.Link.Carrier):
		return ReasonCarrierLost, "the route's device lost its carrier"
	case addr:
		return ReasonAddressRemoved, "an address was removed from the route's device"
	case r.HasExpiry && !in.Now.Before(r.ExpiresAt.Add(-correlationWindow)):
		return ReasonRAExpired, "the route's lifetime ran out without a refresh (no router advertisement renewed it)"
	}
	return ReasonUnknown, "no preceding link, address, netconf or expiry news explains it"
}

// protoRA is RTPROT_RA.
const protoRA = 9
