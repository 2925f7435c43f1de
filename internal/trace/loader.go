package trace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// Limits of the in-kernel filters (see bpf/synscope.c).
const (
	MaxPorts = 16
	MaxPeers = 16
)

// DefaultSamplesPerSec bounds the SYNs per second and per CPU that become
// events; the rest only move counters, so a flood costs counters not events.
const DefaultSamplesPerSec = 500

// ErrNoBTF means the kernel exposes no BTF (/sys/kernel/btf/vmlinux), which
// tp_btf programs and CO-RE both need.
var ErrNoBTF = errors.New("kernel BTF not available (/sys/kernel/btf/vmlinux missing): trace needs a kernel built with CONFIG_DEBUG_INFO_BTF")

// ErrNotPermitted means loading BPF programs was refused: trace needs root
// (or CAP_BPF + CAP_PERFMON).
var ErrNotPermitted = errors.New("not permitted to load BPF programs: run trace as root (needs CAP_BPF and CAP_PERFMON)")

// Options selects what the tracer watches. Every filter runs in the kernel.
type Options struct {
	// Netns is a network namespace inode; 0 watches every namespace.
	Netns uint32
	// Ports are server (listener) ports; empty means any.
	Ports []uint16
	// Peers are client addresses; empty means any.
	Peers []netip.Addr
	// SamplesPerSec caps sampled SYNs per second per CPU; 0 means
	// DefaultSamplesPerSec, negative means unlimited.
	SamplesPerSec int
}

// Tracer is a loaded and attached set of handshake tracepoint programs.
type Tracer struct {
	maps  *ebpf.Collection // maps only
	progs map[string]*ebpf.Program
	caps  []Capability
	links []link.Link
	rd    *ringbuf.Reader
	names *Names
	clock clockOffset
	fexit FexitStatus
	// syms resolves drop locations where kfree_skb has no reason.
	syms *Kallsyms
}

func (o Options) config() (synscopeConfig, error) {
	var c synscopeConfig
	c.Netns = o.Netns
	if len(o.Ports) > MaxPorts {
		return c, fmt.Errorf("at most %d ports can be filtered, got %d", MaxPorts, len(o.Ports))
	}
	if len(o.Peers) > MaxPeers {
		return c, fmt.Errorf("at most %d peers can be filtered, got %d", MaxPeers, len(o.Peers))
	}
	c.Nports = uint32(len(o.Ports))
	copy(c.Ports[:], o.Ports)
	c.Npeers = uint32(len(o.Peers))
	for i, p := range o.Peers {
		c.Peers[i] = mapped(p).As16()
	}
	switch {
	case o.SamplesPerSec == 0:
		c.EventsPerSec = DefaultSamplesPerSec
	case o.SamplesPerSec > 0:
		c.EventsPerSec = uint32(o.SamplesPerSec)
	}
	return c, nil
}

// mapped returns a as a 16-byte address with IPv4 as ::ffff:a.b.c.d, the form
// the BPF side stores.
func mapped(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom16(a.As16())
	}
	return a
}

// ErrKernelUnsupported means the running kernel lacks something trace
// cannot work without; the error names it on one line.
var ErrKernelUnsupported = errors.New("trace cannot run on this kernel")

// Open loads the BPF programs with opts' filters and attaches them. Each
// program is loaded and attached on its own: one the kernel lacks or
// refuses leaves its capability out (Tracer.Capabilities) and the rest
// run. It returns ErrNoBTF or ErrNotPermitted (wrapped) when the machine
// cannot run the tracer, and ErrKernelUnsupported (wrapped, one line) when
// a hook the tracer needs is missing — never a verifier dump.
func Open(opts Options) (*Tracer, error) {
	cfg, err := opts.config()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, ErrNoBTF
	}
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	hooks := btfHooks{kspec}
	choices := plan(hooks)
	if why := requiredMissing(choices); why != "" {
		return nil, fmt.Errorf("%w: %s", ErrKernelUnsupported, why)
	}
	// Not features.HaveProgramType(ebpf.Tracing): it probes with an fentry
	// program, which machines refuse (EPERM) where tp_btf works; loading
	// the tracepoint programs is the test.
	for _, f := range []struct {
		what string
		err  error
	}{
		{"BPF ring buffers (Linux 5.8+)", features.HaveMapType(ebpf.RingBuf)},
	} {
		if errors.Is(f.err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("%w: needs %s", ErrKernelUnsupported, f.what)
		}
		if errors.Is(f.err, os.ErrPermission) {
			return nil, notPermitted(f.err)
		}
	}
	names, err := LoadNames()
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()

	spec, err := loadSynscope()
	if err != nil {
		return nil, fmt.Errorf("load BPF spec: %w", err)
	}
	if err := spec.Variables["cfg"].Set(cfg); err != nil {
		return nil, fmt.Errorf("set BPF filter config: %w", err)
	}
	t := &Tracer{names: names, clock: newClockOffset(), progs: map[string]*ebpf.Program{}}
	cache := btf.NewCache()
	// Maps (and the filter config in .rodata) first, shared by every
	// program.
	mapSpec := spec.Copy()
	mapSpec.Programs = map[string]*ebpf.ProgramSpec{}
	t.maps, err = ebpf.NewCollectionWithOptions(mapSpec, ebpf.CollectionOptions{Cache: cache})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, notPermitted(err)
		}
		return nil, fmt.Errorf("create BPF maps: %w", err)
	}
	// Load every program first, then attach them with on_rx (which opens
	// a SYN's record) last: a SYN is followed only once every hook that
	// annotates it is in place, however long loading took (seconds under
	// emulation), so no early SYN lacks evidence a later one would have.
	loaded := map[int]*ebpf.Program{}
	for i := range choices {
		c := &choices[i]
		if c.prog == "" {
			continue
		}
		p, err := loadProgram(spec, c.prog, t.maps.Maps, cache)
		if err != nil {
			c.state, c.detail = stateOf(err), oneLine(err)
			continue
		}
		loaded[i] = p
	}
	order := make([]int, 0, len(loaded))
	for i := range choices {
		if _, ok := loaded[i]; ok && choices[i].prog != "on_rx" {
			order = append(order, i)
		}
	}
	for i := range choices {
		if _, ok := loaded[i]; ok && choices[i].prog == "on_rx" {
			order = append(order, i)
		}
	}
	for _, i := range order {
		c, p := &choices[i], loaded[i]
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			p.Close()
			err = fmt.Errorf("attach %s: %w", c.prog, err)
			c.state, c.detail = stateOf(err), oneLine(err)
			continue
		}
		t.progs[c.prog] = p
		t.links = append(t.links, l)
	}
	if why := requiredMissing(choices); why != "" {
		t.Close()
		if os.Geteuid() != 0 && strings.Contains(why, "not permitted") {
			return nil, ErrNotPermitted
		}
		return nil, fmt.Errorf("%w: %s", ErrKernelUnsupported, why)
	}
	t.caps = capabilities(hooks, choices)
	if findChoice(choices, "kfree_skb").prog == "on_kfree_noreason" {
		// No drop reasons: drops are named by the function that freed
		// them, resolved once per kernel.
		if t.syms, err = LoadKallsyms(); err != nil {
			for i := range t.caps {
				if t.caps[i].Name == capDropReason {
					t.caps[i].Detail = "drop sites cannot be resolved either: " + err.Error()
				}
			}
		}
	}
	t.rd, err = ringbuf.NewReader(t.maps.Maps["events"])
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
	// Only after the tracepoints are attached, so whatever the probe meets
	// cannot keep the tracer from running.
	t.fexit = ProbeFexit()
	return t, nil
}

// loadProgram loads one program of spec against the shared maps.
func loadProgram(spec *ebpf.CollectionSpec, name string, maps map[string]*ebpf.Map, cache *btf.Cache) (*ebpf.Program, error) {
	ps := spec.Copy()
	p, ok := ps.Programs[name]
	if !ok {
		return nil, fmt.Errorf("program %s not in the BPF object", name)
	}
	ps.Programs = map[string]*ebpf.ProgramSpec{name: p}
	coll, err := ebpf.NewCollectionWithOptions(ps, ebpf.CollectionOptions{MapReplacements: maps, Cache: cache})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	prog := coll.DetachProgram(name)
	coll.Close()
	return prog, nil
}

// oneLine shortens a load or attach error to its first line (a verifier
// error carries the whole log), without cilium/ebpf's MEMLOCK hint, which
// misleads since 5.11.
func oneLine(err error) string {
	var ve *ebpf.VerifierError
	msg := err.Error()
	if errors.As(err, &ve) {
		msg = strings.SplitN(msg, "\n", 2)[0]
	}
	msg, _, _ = strings.Cut(msg, " (MEMLOCK may be too low")
	msg, _, _ = strings.Cut(msg, "\n")
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}

// Capabilities reports, for this kernel, what the tracer can tell and
// what it cannot (with the reason), as probed when it opened.
func (t *Tracer) Capabilities() []Capability { return append([]Capability(nil), t.caps...) }

// Fexit reports whether fexit programs could attach when the tracer
// opened (probed, never required).
func (t *Tracer) Fexit() FexitStatus { return t.fexit }

// notPermitted keeps the message to one line for the usual case (not root)
// and adds the kernel's refusal when even root was refused (lockdown, LSM,
// fentry-style EPERM).
func notPermitted(err error) error {
	if os.Geteuid() != 0 {
		return ErrNotPermitted
	}
	return fmt.Errorf("%w (as root: %v)", ErrNotPermitted, err)
}

// Names returns the kernel enum names the tracer resolved at load time.
func (t *Tracer) Names() *Names { return t.names }

// Wake makes a blocked Read return ringbuf.ErrFlushed once the events
// already queued are read.
func (t *Tracer) Wake() error { return t.rd.Flush() }

// Read blocks until the next event, the deadline passes
// (os.ErrDeadlineExceeded), Wake is called (ringbuf.ErrFlushed) or the
// tracer is closed (os.ErrClosed).
func (t *Tracer) Read(deadline time.Time) (Event, error) {
	t.rd.SetDeadline(deadline)
	rec, err := t.rd.Read()
	if err != nil {
		return Event{}, err
	}
	var raw synscopeEvent
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &raw); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	ev := decode(&raw, t.names, t.clock)
	if ev.DropReason == "" && ev.Location != 0 && (ev.Kind == KindDrop || ev.Kind == KindSYN && ev.Flags&FlagConsumed == 0) {
		if fn, off, ok := t.syms.Resolve(ev.Location); ok {
			ev.DropFunc, ev.DropSite = fn, fmt.Sprintf("%s+0x%x", fn, off)
		}
	}
	if ev.SynAckDropReason == "" && ev.SynAckLocation != 0 {
		if fn, off, ok := t.syms.Resolve(ev.SynAckLocation); ok {
			ev.SynAckDropFunc, ev.SynAckDropSite = fn, fmt.Sprintf("%s+0x%x", fn, off)
		}
	}
	return ev, nil
}

// Counters sums the per-CPU counters the BPF side keeps for every SYN,
// sampled or not.
func (t *Tracer) Counters() (Counters, error) {
	var c Counters
	vals := make([]uint64, c_max)
	for i := range vals {
		var per []uint64
		if err := t.maps.Maps["counters"].Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range per {
			vals[i] += v
		}
	}
	c.SYNs = vals[cSyn]
	c.Unsampled = vals[cSynUnsampled]
	c.SynAcked = vals[cSynSynack]
	c.RouteFailed = vals[cSynRouteFail]
	c.ConsumedSilently = vals[cSynConsumedSilent]
	c.Reset = vals[cSynRst]
	c.Dropped = vals[cSynDropped]
	c.SynackDropped = vals[cSynackDropped]
	c.SynackRetransmits = vals[cSynackRetrans]
	c.Acks = vals[cAck]
	c.Lost = vals[cLost]
	c.Cookies = vals[cSynCookie]
	c.SYNDropReasons = map[string]uint64{}
	c.SynackDropReasons = map[string]uint64{}
	var per []uint64
	for i := uint32(0); i < dropSlots; i++ {
		if err := t.maps.Maps["drops"].Lookup(i, &per); err != nil {
			return c, fmt.Errorf("read drop counter %d: %w", i, err)
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		if n == 0 {
			continue
		}
		name := t.names.DropReason(i % (dropSlots / 2))
		if !t.names.HasDropReasons() {
			name = noDropReason
		}
		if i < dropSlots/2 {
			c.SYNDropReasons[name] += n
		} else {
			c.SynackDropReasons[name] += n
		}
	}
	return c, nil
}

// Close detaches the programs and frees the maps.
func (t *Tracer) Close() error {
	var errs []error
	if t.rd != nil {
		errs = append(errs, t.rd.Close())
	}
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	for _, p := range t.progs {
		errs = append(errs, p.Close())
	}
	if t.maps != nil {
		t.maps.Close()
	}
	return errors.Join(errs...)
}

// Names resolves kernel enum values to names from the running kernel's BTF,
// so new drop reasons need no synscope release.
type Names struct {
	drop map[uint32]string
	rst  map[uint32]string
}

// LoadNames reads enum skb_drop_reason and enum sk_rst_reason from the
// kernel's BTF.
func LoadNames() (*Names, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNoBTF
		}
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	n := &Names{}
	// Before 5.17 there is no enum skb_drop_reason: drops are named by
	// their site (Event.DropSite).
	n.drop, _ = enumNames(spec, "skb_drop_reason", "SKB_DROP_REASON_")
	// sk_rst_reason exists since 6.10; older kernels simply get numbers.
	n.rst, _ = enumNames(spec, "sk_rst_reason", "SK_RST_REASON_")
	return n, nil
}

func enumNames(spec *btf.Spec, name, prefix string) (map[uint32]string, error) {
	var e *btf.Enum
	if err := spec.TypeByName(name, &e); err != nil {
		return nil, fmt.Errorf("find enum %s in kernel BTF: %w", name, err)
	}
	m := make(map[uint32]string, len(e.Values))
	for _, v := range e.Values {
		nm := v.Name
		if len(nm) > len(prefix) && nm[:len(prefix)] == prefix {
			nm = nm[len(prefix):]
		}
		m[uint32(v.Value)] = nm
	}
	return m, nil
}

// NewNames builds a Names from explicit tables (for tests and recorded
// fixtures).
func NewNames(drop, rst map[uint32]string) *Names { return &Names{drop: drop, rst: rst} }

// noDropReason is the counters' key for drops on a kernel without drop
// reasons.
const noDropReason = "(no drop reason before Linux " + DropReasonKernel + ")"

// HasDropReasons reports whether the kernel names drops (enum
// skb_drop_reason, 5.17+).
func (n *Names) HasDropReasons() bool { return n.drop != nil }

// DropReason names a skb_drop_reason value ("NO_SOCKET"), "reason-N" when
// the kernel does not know it, and "" on a kernel without drop reasons.
func (n *Names) DropReason(v uint32) string {
	if n.drop == nil {
		return ""
	}
	if s, ok := n.drop[v]; ok {
		return s
	}
	return fmt.Sprintf("reason-%d", v)
}

// RstReason names a sk_rst_reason value.
func (n *Names) RstReason(v uint32) string {
	if s, ok := n.rst[v]; ok {
		return s
	}
	return fmt.Sprintf("rst-reason-%d", v)
}

// ProgramCost is the kernel's accounting of one tracer program (needs
// ebpf.EnableStats / kernel.bpf_stats_enabled; zero otherwise).
type ProgramCost struct {
	Name    string
	Runs    uint64
	Runtime time.Duration
	// RecursionMisses counts runs skipped because another BPF program was
	// running on the CPU: those moments were not observed.
	RecursionMisses uint64
}

// Costs returns the run count and run time of every attached program.
func (t *Tracer) Costs() ([]ProgramCost, error) {
	var out []ProgramCost
	for name, p := range t.progs {
		st, err := p.Stats()
		if err != nil {
			return nil, fmt.Errorf("stats of %s: %w", name, err)
		}
		out = append(out, ProgramCost{Name: name, Runs: st.RunCount, Runtime: st.Runtime, RecursionMisses: st.RecursionMisses})
	}
	return out, nil
}
