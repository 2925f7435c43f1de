package firewall

import (
	"fmt"

	"github.com/synscope/synscope/internal/fixcmd"

	"github.com/vishvananda/netlink"
)

// TCFilter is a tc classifier attached to a device's ingress or egress
// (clsact) hook. Such a filter can drop a SYN-ACK after TCP handed it to
// the stack, which TCP never learns about: TCPTimeouts rises while
// TCPSynRetrans stays flat.
type TCFilter struct {
	Dev       string
	Ifindex   int
	Direction string // "ingress" or "egress"
	Kind      string // "bpf", "u32", "flower", ...
	Priority  uint16
	Handle    uint32
	// For bpf filters: the program's id, the filter's name (what tc was
	// given, often the object file and section) and whether the program's
	// return value is the verdict (direct-action).
	ProgID       int
	ProgName     string
	DirectAction bool
	// Text names the filter as `tc filter show` would, enough to find it.
	Text string
}

// TCFilters lists the ingress and egress filters of every device in the
// calling thread's namespace (call inside netns.Target.Do). Read-only.
func TCFilters() ([]TCFilter, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("tc filters: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("tc filters: list links: %w", err)
	}
	var out []TCFilter
	for _, l := range links {
		for _, dir := range []struct {
			name   string
			parent uint32
		}{{"ingress", netlink.HANDLE_MIN_INGRESS}, {"egress", netlink.HANDLE_MIN_EGRESS}} {
			fs, err := h.FilterList(l, dir.parent)
			if err != nil {
				continue // no clsact qdisc on this device
			}
			for _, f := range fs {
				a := f.Attrs()
				tf := TCFilter{Dev: l.Attrs().Name, Ifindex: l.Attrs().Index, Direction: dir.name,
					Kind: f.Type(), Priority: a.Priority, Handle: a.Handle}
				tf.Text = fmt.Sprintf("tc filter on %s %s pref %d %s", tf.Dev, dir.name, a.Priority, tf.Kind)
				if b, ok := f.(*netlink.BpfFilter); ok {
					tf.ProgID, tf.ProgName, tf.DirectAction = b.Id, b.Name, b.DirectAction
					tf.Text += fmt.Sprintf(" %s id %d", b.Name, b.Id)
					if b.DirectAction {
						tf.Text += " direct-action"
					}
				}
				out = append(out, tf)
			}
		}
	}
	return out, nil
}

// Delete is the command that removes the filter, run by tc (the program
// with any namespace prefix: netns.Target.Command("tc")).
func (f TCFilter) Delete(tc fixcmd.Cmd) fixcmd.Cmd {
	return tc.Append("filter", "del", "dev", f.Dev, f.Direction, "pref", f.Priority)
}
