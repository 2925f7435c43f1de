package probe

import (
	"net/netip"
	"time"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/causes"
)

// Schema names the JSON format of a Report; bumped on incompatible change.
const Schema = "synscope.probe/v1"

// Verdict is the one-word outcome of a probe.
type Verdict string

// The verdicts, most specific first in the order Decide tries them.
const (
	// Connected: every address that was tried connected (loss may be > 0).
	Connected Verdict = "connected"
	// Refused: the destination (or a firewall near it) answered RST.
	Refused Verdict = "refused"
	// DNSFailure: the name did not resolve to any address.
	DNSFailure Verdict = "dns-failure"
	// LocalNoRoute: this host's own route lookup fails for the flow.
	LocalNoRoute Verdict = "local-no-route"
	// LocalFirewall: a local nftables output/postrouting rule drops the SYN.
	LocalFirewall Verdict = "local-firewall"
	// Proxy: an HTTP(S)/ALL proxy variable applies and the direct path
	// fails: the application's path is the proxy, not this one.
	Proxy Verdict = "proxy"
	// FamilyBroken: one address family connects, the other does not.
	FamilyBroken Verdict = "family-broken"
	// PathDrop: SYNs die after hop N, before the destination's last hop.
	PathDrop Verdict = "path-drop"
	// PathReject: a hop answered with ICMP destination unreachable.
	PathReject Verdict = "path-reject"
	// ServerSilent: the SYN passes the destination's last hop and nothing
	// answers.
	ServerSilent Verdict = "server-silent"
	// TimedOut: no answer at all and no --path to say where it died.
	TimedOut Verdict = "timed-out"
	// LocalError: the local stack refused the connect for another reason.
	LocalError Verdict = "local-error"
	// ForgedReset: the RSTs come from a device nearer than the server
	// (their TTL), not from the server.
	ForgedReset Verdict = "forged-reset"
	// Confirmed: the server's kernel (--server, traced while the probe
	// ran) says what became of the SYNs; Cause is the server's.
	Confirmed Verdict = "confirmed"
)

// Outcome is what one handshake attempt got.
type Outcome string

// Attempt outcomes.
const (
	OutConnected   Outcome = "connected"
	OutRefused     Outcome = "refused"
	OutTimeout     Outcome = "timeout"
	OutUnreachable Outcome = "icmp-unreachable"
	OutTTLExceeded Outcome = "ttl-exceeded"
	OutLocalError  Outcome = "local-error"
)

// Report is everything one probe observed. Fields are documented in the
// docs/probe.md (JSON schema).
type Report struct {
	Schema string `json:"schema"`
	// Version is the synscope that wrote the report (`synscope version --json`).
	Version   buildinfo.Info `json:"version"`
	Time      time.Time      `json:"time"`
	Target    Target         `json:"target"`
	Verdict   Verdict        `json:"verdict"`
	Cause     causes.ID      `json:"cause,omitempty"`
	Summary   string         `json:"summary"`
	Next      string         `json:"next,omitempty"`
	NextCmd   string         `json:"next_command,omitempty"`
	DNS       *DNSReport     `json:"dns,omitempty"`
	Proxy     ProxyReport    `json:"proxy"`
	Addresses []*AddrProbe   `json:"addresses"`
	Checks    []Check        `json:"checks"`
	Elapsed   float64        `json:"elapsed_ms"`
	// Server is the server's side (--server), absent without --server.
	Server *ServerReport `json:"server,omitempty"`
}

// ServerReport says whether the server's kernel was watched (--server).
type ServerReport struct {
	// Via is how: ServerViaNetns (the trace engine run here in the
	// server's namespace) or ServerViaWatch (the server's watch asked over
	// HTTPS, --server https://...).
	Via string `json:"via"`
	// Endpoint is the watch URL (credentials in it redacted); via watch
	// only.
	Endpoint string `json:"endpoint,omitempty"`
	// Netns is the server's namespace as given (or its label); via watch,
	// watch's label of the namespace the fates came from ("" when none
	// came).
	Netns string `json:"netns"`
	// Status is ServerChecked or ServerNotChecked; Reason says why not.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Missing are the trace hooks this kernel lacks (what may go unseen).
	Missing []string `json:"missing_hooks,omitempty"`
}

// ServerReport sources (Via).
const (
	ServerViaNetns = "netns"
	ServerViaWatch = "watch"
)

// ServerReport statuses.
const (
	ServerChecked    = "checked"
	ServerNotChecked = "not-checked"
)

// ServerView is the server kernel's view of one attempt.
type ServerView struct {
	// Checked is false when the server's side of this attempt was not
	// looked at (Text says why); Seen is then meaningless.
	Checked bool `json:"checked"`
	// Seen: the server's kernel saw the attempt's SYN arrive.
	Seen bool `json:"seen"`
	// Fate is trace's fate (established, refused, dropped,
	// synack-retransmitted, unknown), Cause the catalog cause.
	Fate     string    `json:"fate,omitempty"`
	Cause    causes.ID `json:"cause,omitempty"`
	Evidence []string  `json:"evidence,omitempty"`
	// SYNs and SynAcks count the attempt's SYNs the server saw and the
	// SYN-ACKs it sent.
	SYNs    int `json:"syns,omitempty"`
	SynAcks int `json:"synacks,omitempty"`
	// Incomplete: tracing stopped while the handshake was under way.
	Incomplete bool `json:"incomplete,omitempty"`
	// Firewall names the server's nftables rules that may drop this
	// SYN, with their counters' rise while the probe ran and the removal
	// command: read where the server is a namespace on this host and its
	// kernel called the drop firewall-drop (a watch endpoint does not
	// reveal the server's ruleset).
	Firewall []FWRule `json:"firewall,omitempty"`
	// server is the server end the fate was seen at (for the rule walk).
	server netip.AddrPort
	// Text is the server side in words ("arrived, consumed: no route
	// back to the client for the SYN-ACK", "never seen at the server").
	Text string `json:"text"`
}

// Target is what was probed and from where.
type Target struct {
	Host  string `json:"host"`
	Port  uint16 `json:"port"`
	Netns string `json:"netns"`
	// OS is set when the probe ran on Windows ("windows") or macOS
	// ("darwin"): checks and next steps are that system's.
	OS     string `json:"os,omitempty"`
	Family int    `json:"family,omitempty"` // 4 or 6 when --family restricted it
	Source string `json:"source,omitempty"`
	Mark   uint32 `json:"mark,omitempty"`
	UID    uint32 `json:"uid"`
	Count  int    `json:"count"`
	// Mode is how the attempts were made: ModeConnect or ModeRaw (raw
	// asked and possible).
	Mode string `json:"mode"`
}

// Attempt modes (Target.Mode).
const (
	ModeConnect = "connect" // connect(): a full handshake, kernel retransmits included
	ModeRaw     = "raw-syn" // one SYN from a raw socket per attempt, reset after a SYN-ACK
)

// Check is one part of the probe and whether it ran.
type Check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok, skipped, failed
	Detail string `json:"detail,omitempty"`
}

// DNSReport is name resolution as the namespace's configuration does it.
type DNSReport struct {
	Name string `json:"name"`
	// Literal is true when the host was an IP address (nothing resolved).
	Literal    bool     `json:"literal"`
	ResolvConf string   `json:"resolv_conf,omitempty"`
	HostsFile  string   `json:"hosts_file,omitempty"`
	Servers    []string `json:"nameservers,omitempty"`
	Search     []string `json:"search,omitempty"`
	// Order is the nsswitch "hosts:" sources consulted, e.g. files dns.
	Order []string `json:"order,omitempty"`
	// Hosts are the hosts-file addresses for the name.
	Hosts []string `json:"hosts,omitempty"`
	// HostsOverride is true when the hosts file answers the name, so the
	// system resolver never asks DNS; DNS answers are still listed.
	HostsOverride bool       `json:"hosts_override"`
	Queries       []DNSQuery `json:"queries,omitempty"`
	// Addresses is what the system resolver would return, in order.
	Addresses []string `json:"addresses"`
	Error     string   `json:"error,omitempty"`
	// System is true when Addresses are the system resolver's own answer
	// (Windows, macOS: what applications get); Queries then show what each
	// configured server answers when asked directly.
	System bool `json:"system_resolver,omitempty"`
	// Scopes are the OS's resolver configurations (Windows: per-adapter
	// servers and NRPT rules; macOS: /etc/resolver files).
	Scopes []DNSScope `json:"scopes,omitempty"`
}

// DNSScope is one resolver configuration the OS holds.
type DNSScope struct {
	// Source says where it was read: "adapter Ethernet", "NRPT rule
	// {GUID}", "/etc/resolver/corp.example".
	Source string `json:"source"`
	// Domain is the namespace the scope serves ("" = every name).
	Domain  string   `json:"domain,omitempty"`
	Servers []string `json:"servers"`
	// Matches is true when the scope serves the probed name.
	Matches bool `json:"matches"`
}

// DNSQuery is one question sent to one server.
type DNSQuery struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"` // A, AAAA
	Server  string   `json:"server"`
	RTTms   float64  `json:"rtt_ms"`
	Rcode   string   `json:"rcode,omitempty"`   // NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...
	Outcome string   `json:"outcome"`           // answer, nodata, nxdomain, servfail, refused, timeout, error
	Answers []string `json:"answers,omitempty"` // addresses
	CNAMEs  []string `json:"cnames,omitempty"`  // the CNAME chain, owner -> target
	TTL     uint32   `json:"ttl,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// ProxyReport lists the proxy variables that would apply to the target.
type ProxyReport struct {
	// Set are the proxy variables present in the environment (values with
	// credentials redacted).
	Set []ProxyVar `json:"set"`
	// Applies is true when an HTTP or HTTPS client honouring the variables
	// would not connect to the target directly.
	Applies bool `json:"applies"`
	// HTTP and HTTPS are the proxy URLs used for http:// and https:// to
	// the target ("" = direct); ALL is ALL_PROXY (curl and others).
	HTTP  string `json:"http,omitempty"`
	HTTPS string `json:"https,omitempty"`
	ALL   string `json:"all,omitempty"`
	// NoProxy is the NO_PROXY entry that exempts the target, if any.
	NoProxy string `json:"no_proxy_match,omitempty"`
	// System are the OS's proxy settings (Windows: WinHTTP and the user's
	// Internet Settings); absent where the OS's settings were not read
	// (the "proxy-system" check says why).
	System []SystemProxy `json:"system,omitempty"`
}

// SystemProxy is one OS proxy configuration.
type SystemProxy struct {
	Source string `json:"source"` // "WinHTTP", "Internet Settings (user)"
	// Proxy is the static proxy ("" = none), Bypass its exception list.
	Proxy  string `json:"proxy,omitempty"`
	Bypass string `json:"bypass,omitempty"`
	// PAC is the automatic configuration script URL; AutoDetect is WPAD.
	// A script decides per URL and is not evaluated here.
	PAC        string `json:"pac_url,omitempty"`
	AutoDetect bool   `json:"auto_detect"`
	// Applies is true when the static proxy is used for the target (not
	// bypassed); a PAC or WPAD configuration may apply as well.
	Applies bool `json:"applies"`
}

// ProxyVar is one environment variable.
type ProxyVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// AddrProbe is everything about one resolved address.
type AddrProbe struct {
	Addr     string    `json:"addr"`
	Family   string    `json:"family"` // ipv4, ipv6
	Local    LocalPath `json:"local"`
	Attempts []Attempt `json:"attempts"`
	Stats    Stats     `json:"stats"`
	Verdict  Verdict   `json:"verdict"`
	Cause    causes.ID `json:"cause,omitempty"`
	// Path, LastHop and Reached are set with --path.
	Path     []Hop  `json:"path,omitempty"`
	LastHop  int    `json:"last_hop,omitempty"` // highest TTL whose SYNs were seen to pass (time exceeded)
	LastAddr string `json:"last_hop_addr,omitempty"`
	Reached  bool   `json:"reached"` // a SYN got SYN-ACK or RST from the destination
	ReachTTL int    `json:"reached_ttl,omitempty"`
	// PingTTL is the hop count at which ICMP echo reached the destination
	// (0: not checked or not reached).
	PingTTL  int    `json:"ping_ttl,omitempty"`
	PathNote string `json:"path_note,omitempty"`
	// ServerHop is the destination's hop distance from its own answers,
	// and ServerHopBy what told it: "syn-ack" (the TTL of a SYN-ACK), "path"
	// (the TTL at which a SYN got a SYN-ACK), "icmp-echo" (the TTL at which
	// ping reached it). 0: not known.
	ServerHop   int    `json:"server_hop,omitempty"`
	ServerHopBy string `json:"server_hop_by,omitempty"`
	// ForgedResets counts RSTs whose sender sits nearer than ServerHop: a
	// device on the path answered in the server's name.
	ForgedResets int `json:"forged_resets,omitempty"`
	// ResetHop is the hop of the nearest RST sender (raw mode, 0: none).
	ResetHop int `json:"reset_hop,omitempty"`
}

// LocalPath is this host's decision for the flow.
type LocalPath struct {
	RouteOK    bool   `json:"route_ok"`
	Route      string `json:"route"`
	RouteError string `json:"route_error,omitempty"`
	Source     string `json:"source,omitempty"`
	Dev        string `json:"dev,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
	Table      int    `json:"table,omitempty"`
	ByHand     string `json:"by_hand,omitempty"`
	// Blocker is the local policy rule or route that ended the lookup
	// with an error, named (when the route failed and the rules tell).
	Blocker *Blocker `json:"blocker,omitempty"`
	// Neighbor is the next hop's ARP/NDP entry after the attempts.
	Neighbor *Neighbor `json:"neighbor,omitempty"`
	// Firewall are the local nftables output/postrouting rules that may
	// drop the SYN, with counters before and after the attempts.
	Firewall []FWRule `json:"firewall,omitempty"`
}

// Blocker is what in this host's policy routing blocks the flow.
type Blocker struct {
	// Kind is "rule" (a rule whose action is prohibit, blackhole or
	// unreachable) or "route" (a route of such a type in the table a rule
	// looked up).
	Kind string `json:"kind"`
	// Priority, Rule and Action are the rule that matched: its priority,
	// its text as `ip rule` prints it (selector and action), its action.
	Priority int    `json:"priority"`
	Rule     string `json:"rule"`
	Action   string `json:"action"`
	// Table, Route and RouteType are set for Kind "route".
	Table     int    `json:"table,omitempty"`
	TableName string `json:"table_name,omitempty"`
	Route     string `json:"route,omitempty"`
	RouteType string `json:"route_type,omitempty"`
	// Fix is the command that removes it (quoted by fixcmd).
	Fix string `json:"fix"`

	routeDst string // the route's destination as ip takes it ("default")
}

// Neighbor is a next hop's neighbour cache entry.
type Neighbor struct {
	Addr  string `json:"addr"`
	Dev   string `json:"dev"`
	State string `json:"state"` // REACHABLE, STALE, FAILED, INCOMPLETE, ... or "none"
	MAC   string `json:"mac,omitempty"`
}

// FWRule is a local rule that can drop the probe's SYN.
type FWRule struct {
	Where   string `json:"where"`   // "inet filter output handle 4"
	Rule    string `json:"rule"`    // nft-like text
	Verdict string `json:"verdict"` // drop, reject, policy drop, vmap
	Packets uint64 `json:"packets"`
	// Delta is the counter's rise while the probe ran (-1: no counter).
	Delta int64 `json:"packets_delta"`
	// Fix is the command that removes the rule (quoted by fixcmd).
	Fix string `json:"fix,omitempty"`
}

// Attempt is one handshake.
type Attempt struct {
	Seq       int     `json:"seq"`
	Outcome   Outcome `json:"outcome"`
	RTTms     float64 `json:"rtt_ms,omitempty"`
	LocalPort uint16  `json:"local_port,omitempty"`
	// SynRetrans is how many times the kernel re-sent the SYN before the
	// outcome (TCP_INFO); a 1 s handshake is usually one lost SYN.
	SynRetrans int    `json:"syn_retransmits,omitempty"`
	ICMPFrom   string `json:"icmp_from,omitempty"`
	ICMPType   int    `json:"icmp_type,omitempty"`
	ICMPCode   int    `json:"icmp_code,omitempty"`
	Error      string `json:"error,omitempty"`
	// TTL is the answer's IP TTL (IPv6 hop limit) as received, and FromHop
	// the hop its sender sits at, counted from the usual initial TTLs 64,
	// 128 and 255 (1 = the next hop); raw mode only.
	TTL     int `json:"ttl,omitempty"`
	FromHop int `json:"from_hop,omitempty"`
	// Server is the server kernel's view of this attempt (--server).
	Server *ServerView `json:"server,omitempty"`
}

// Stats summarises the attempts of one address.
type Stats struct {
	Sent        int     `json:"sent"`
	Connected   int     `json:"connected"`
	Refused     int     `json:"refused"`
	Timeouts    int     `json:"timeouts"`
	Unreachable int     `json:"unreachable"`
	Errors      int     `json:"errors"`
	LossPct     float64 `json:"loss_pct"`
	MinMs       float64 `json:"min_ms,omitempty"`
	MedianMs    float64 `json:"median_ms,omitempty"`
	P99Ms       float64 `json:"p99_ms,omitempty"`
	MaxMs       float64 `json:"max_ms,omitempty"`
}

// Hop is one TTL of the path probe.
type Hop struct {
	TTL    int        `json:"ttl"`
	Probes []HopProbe `json:"probes"`
	Addr   string     `json:"addr,omitempty"`   // the (first) responder
	Answer string     `json:"answer"`           // time-exceeded, syn-ack, rst, unreachable, none, mixed
	RTTms  float64    `json:"rtt_ms,omitempty"` // best of the probes
	Name   string     `json:"name,omitempty"`   // reverse DNS of Addr, when it resolves
}

// HopProbe is one SYN of the path probe (one source port at one TTL).
type HopProbe struct {
	LocalPort uint16  `json:"local_port"`
	Answer    string  `json:"answer"`
	From      string  `json:"from,omitempty"`
	RTTms     float64 `json:"rtt_ms,omitempty"`
	ICMPType  int     `json:"icmp_type,omitempty"`
	ICMPCode  int     `json:"icmp_code,omitempty"`
	// Quote says what the ICMP error quoted of the SYN (ports and
	// sequence number matched), when it quoted anything.
	Quote string `json:"quote,omitempty"`
}

// Path probe limits: every loop is bounded.
const (
	PathMaxTTL    = 16 // highest TTL tried
	PathPorts     = 3  // SYNs (source ports) per TTL, so an ECMP path is covered
	PathSilentEnd = 3  // stop after this many TTLs in a row with no answer at all
)

// Hop answers.
const (
	ansTimeExceeded = "time-exceeded"
	ansSynAck       = "syn-ack"
	ansRST          = "rst"
	ansUnreachable  = "unreachable"
	ansNone         = "none"
	ansLocal        = "local-error"
)
