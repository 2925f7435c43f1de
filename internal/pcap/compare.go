package pcap

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"

	"github.com/synscope/synscope/internal/buildinfo"
	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/packet"
	"github.com/synscope/synscope/internal/safetext"
)

// Death says where a connection died between two capture points.
type Death string

// Places of death.
const (
	DeathDelivered    Death = "delivered"
	DeathLostToServer Death = "lost-to-server" // left the client, never reached the server
	DeathServerSilent Death = "server-silent"  // reached the server, no answer left it
	DeathLostToClient Death = "lost-to-client" // the answer left the server, never reached the client
	DeathRefused      Death = "refused"
	DeathUnknown      Death = "unknown"
	// DeathNotCaptured: the other capture cannot show this connection
	// (it went to a host that capture does not see, or happened outside
	// its time span), so nothing is known about its fate there.
	DeathNotCaptured Death = "not-in-other-capture"
)

// Tuple is a connection 4-tuple as one capture saw it.
type Tuple struct {
	OrigH string `json:"orig_h"`
	OrigP uint16 `json:"orig_p"`
	RespH string `json:"resp_h"`
	RespP uint16 `json:"resp_p"`
}

// PacketFate is one packet's fate across the two captures.
type PacketFate struct {
	FromClient bool    `json:"from_client"`
	Flags      string  `json:"flags"`
	RelSeq     uint32  `json:"rel_seq"`
	Len        int     `json:"len"`
	ClientTS   float64 `json:"client_ts,omitempty"`
	ServerTS   float64 `json:"server_ts,omitempty"` // on the server's clock
	// Fate: delivered, lost-to-server (client packet never seen at the
	// server), lost-to-client (server packet never seen at the client),
	// or "not-sent" for a packet seen only at its receiver's side (e.g.
	// made up by a middlebox).
	Fate  string `json:"fate"`
	Index int    `json:"frame"`
}

// Paired is one connection seen from both sides (or only one).
type Paired struct {
	ID     int    `json:"id"`
	Death  Death  `json:"death"`
	Detail string `json:"detail"`
	// Cause is the catalog cause where the two captures can tell.
	Cause       causes.ID    `json:"cause,omitempty"`
	ClientTuple *Tuple       `json:"client_tuple,omitempty"`
	ServerTuple *Tuple       `json:"server_tuple,omitempty"`
	ClientView  *Conn        `json:"client_view,omitempty"`
	ServerView  *Conn        `json:"server_view,omitempty"`
	Packets     []PacketFate `json:"packets"`
	// OneWayDelay estimates (seconds) once the clock offset is removed.
	DelayToServer *float64 `json:"delay_to_server,omitempty"`
	DelayToClient *float64 `json:"delay_to_client,omitempty"`
}

// Comparison is the result of comparing two captures.
type Comparison struct {
	// Version is the synscope that wrote the report (`synscope version --json`).
	Version    buildinfo.Info `json:"version"`
	ClientFile string         `json:"client_file"`
	ServerFile string         `json:"server_file"`
	// ClockOffset is the server clock minus the client clock, seconds.
	ClockOffset float64   `json:"clock_offset"`
	OffsetFrom  string    `json:"clock_offset_method"`
	Summary     []Count   `json:"summary"`
	Connections []*Paired `json:"connections"`
	// ServerOnly counts server-side connections with no client match.
	ServerOnly int `json:"server_only"`
	// ServerSpan is the server capture's first and last packet time
	// (seconds, server clock), when known.
	ServerSpan []float64 `json:"server_span,omitempty"`
}

// CompareFiles analyses both captures and compares them.
func CompareFiles(clientPath, serverPath string, cfg Config) (*Comparison, error) {
	cfg.KeepPackets = true
	cr, err := AnalyzeFile(clientPath, cfg)
	if err != nil {
		return nil, fmt.Errorf("client capture: %w", err)
	}
	sr, err := AnalyzeFile(serverPath, cfg)
	if err != nil {
		return nil, fmt.Errorf("server capture: %w", err)
	}
	var span *[2]int64
	if sr.Stats.Packets > 0 {
		span = &[2]int64{int64(sr.Stats.FirstTS * 1e9), int64(sr.Stats.LastTS * 1e9)}
	}
	cmp := compare(cr.Conns, sr.Conns, span)
	cmp.ClientFile, cmp.ServerFile = clientPath, serverPath
	return cmp, nil
}

// synInfo is what pairs flows across NAT: the first SYN's content.
type synInfo struct {
	isn    uint32
	tsvals map[uint32]bool
	ipids  map[uint16]bool
	opt    packet.Options
	dport  uint16
	ts     int64
}

func synOf(c *Conn) (synInfo, bool) {
	s := synInfo{tsvals: map[uint32]bool{}, ipids: map[uint16]bool{}}
	found := false
	for _, p := range c.Packets {
		if p.ICMP != "" || p.Bad || p.FromOrig != c.ClientIsOrig || p.Flags&(packet.SYN|packet.ACK|packet.RST) != packet.SYN {
			continue
		}
		if !found {
			s.isn, s.opt, s.ts, found = p.Seq, p.Opt, p.TS, true
		}
		if p.Seq != s.isn {
			continue
		}
		if p.Opt.HasTS {
			s.tsvals[p.TSval] = true
		}
		if p.IPID != 0 {
			s.ipids[p.IPID] = true
		}
	}
	_, s.dport = c.ServerEnd()
	return s, found
}

// pairScore rates how likely two SYN signatures are the same attempt.
func pairScore(a, b synInfo) int {
	score := 0
	if a.isn == b.isn {
		score += 4
	}
	for v := range b.tsvals {
		if a.tsvals[v] {
			score += 4
			break
		}
	}
	for v := range b.ipids {
		if a.ipids[v] {
			score += 2
			break
		}
	}
	if a.opt.MSS == b.opt.MSS {
		score++
	}
	if a.opt.WScale == b.opt.WScale {
		score++
	}
	if a.opt.Layout == b.opt.Layout {
		score++
	}
	if a.opt.SACKOK == b.opt.SACKOK {
		score++
	}
	return score
}

// Compare pairs client-side and server-side connections and decides
// where each client connection died. It does not know the server
// capture's time span (CompareSpan does).
func Compare(client, server []*Conn) *Comparison { return compare(client, server, nil) }

// CompareSpan is Compare knowing the server capture's first and last
// packet times (ns, server clock): a connection whose SYNs all fall
// outside it is not in the other capture rather than lost.
func CompareSpan(client, server []*Conn, first, last int64) *Comparison {
	return compare(client, server, &[2]int64{first, last})
}

func compare(client, server []*Conn, span *[2]int64) *Comparison {
	cmp := &Comparison{Connections: []*Paired{}}
	if span != nil {
		cmp.ServerSpan = []float64{float64(span[0]) / 1e9, float64(span[1]) / 1e9}
	}
	type cand struct {
		c   *Conn
		syn synInfo
	}
	byISN := map[uint32][]int{}
	var srv []cand
	for _, c := range server {
		if s, ok := synOf(c); ok {
			byISN[s.isn] = append(byISN[s.isn], len(srv))
			srv = append(srv, cand{c, s})
		}
	}
	used := make([]bool, len(srv))
	pairs := map[*Conn]*Conn{}
	var order []*Conn
	for _, c := range client {
		cs, ok := synOf(c)
		if !ok {
			continue
		}
		order = append(order, c)
		best, bestScore := -1, 6 // need more than options alone
		consider := func(i int) {
			if used[i] || srv[i].syn.dport != cs.dport && cs.isn != srv[i].syn.isn {
				return
			}
			sc := pairScore(cs, srv[i].syn)
			if sc > bestScore || (sc == bestScore && best >= 0 && absI64(srv[i].syn.ts-cs.ts) < absI64(srv[best].syn.ts-cs.ts)) {
				best, bestScore = i, sc
			}
		}
		for _, i := range byISN[cs.isn] {
			consider(i)
		}
		if best < 0 && len(cs.tsvals) > 0 && len(cs.ipids) > 0 {
			// NAT that rewrites sequence numbers: fall back to a scan
			// that needs TSval, IP ID and every option to agree.
			bestScore = 9
			for i := range srv {
				consider(i)
			}
		}
		if best >= 0 {
			used[best] = true
			pairs[c] = srv[best].c
		}
	}
	for i := range srv {
		if !used[i] {
			cmp.ServerOnly++
		}
	}
	// Pair packets and gather one-way delay samples.
	type pp struct {
		p    *Paired
		cli  *Conn
		srvC *Conn
		cs   []int64 // client->server (tServer - tClient)
		sc   []int64 // server->client (tClient - tServer)
	}
	var all []*pp
	minCS, minSC := int64(math.MaxInt64), int64(math.MaxInt64)
	for i, c := range order {
		x := &pp{p: &Paired{ID: i + 1, ClientView: c, ClientTuple: tupleOf(c)}, cli: c, srvC: pairs[c]}
		if x.srvC != nil {
			x.p.ServerView = x.srvC
			x.p.ServerTuple = tupleOf(x.srvC)
		}
		x.p.Packets = pairPackets(c, x.srvC, &x.cs, &x.sc)
		for _, d := range x.cs {
			minCS = min(minCS, d)
		}
		for _, d := range x.sc {
			minSC = min(minSC, d)
		}
		all = append(all, x)
	}
	var offset int64
	switch {
	case minCS != math.MaxInt64 && minSC != math.MaxInt64:
		offset = (minCS - minSC) / 2
		cmp.OffsetFrom = "lower envelope of one-way delays, both directions (symmetric minimum delay assumed)"
	case minCS != math.MaxInt64:
		offset = minCS
		cmp.OffsetFrom = "lower envelope of client-to-server delays only (path delay folded into the offset)"
	case minSC != math.MaxInt64:
		offset = -minSC
		cmp.OffsetFrom = "lower envelope of server-to-client delays only (path delay folded into the offset)"
	default:
		cmp.OffsetFrom = "no packet seen in both captures"
	}
	cmp.ClockOffset = round6(float64(offset) / 1e9)
	counts := map[string]int{}
	paired := len(pairs) > 0
	for _, x := range all {
		if len(x.cs) > 0 {
			d := round6(float64(minOf(x.cs)-offset) / 1e9)
			x.p.DelayToServer = &d
		}
		if len(x.sc) > 0 {
			d := round6(float64(minOf(x.sc)+offset) / 1e9)
			x.p.DelayToClient = &d
		}
		x.p.Death, x.p.Detail, x.p.Cause = deathOf(x.cli, x.srvC, x.p.Packets)
		if x.srvC == nil && x.p.Death == DeathLostToServer && span != nil {
			if d, ok := outsideSpan(x.cli, *span, offset, paired); ok {
				x.p.Death, x.p.Detail, x.p.Cause = DeathNotCaptured, d, ""
			}
		}
		counts[string(x.p.Death)]++
		cmp.Connections = append(cmp.Connections, x.p)
	}
	cmp.Summary = ranked(counts, 0)
	return cmp
}

func minOf(v []int64) int64 {
	m := v[0]
	for _, x := range v[1:] {
		m = min(m, x)
	}
	return m
}

func absI64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func tupleOf(c *Conn) *Tuple {
	cli, cp := c.ClientEnd()
	srv, sp := c.ServerEnd()
	return &Tuple{cli, cp, srv, sp}
}

type pktKey struct {
	fromCli bool
	flags   uint8
	relSeq  uint32
	relAck  uint32
	ln      int
	tsval   uint32
	nth     int
}

// pairPackets matches packets of one connection across the captures by
// relative sequence/ack numbers, length, flags, TSval and occurrence.
func pairPackets(cli, srv *Conn, cs, sc *[]int64) []PacketFate {
	keys := func(c *Conn) ([]pktKey, []PacketRec) {
		if c == nil {
			return nil, nil
		}
		var isn [2]uint32
		var have [2]bool
		seen := map[pktKey]int{}
		var ks []pktKey
		var ps []PacketRec
		for _, p := range c.Packets {
			if p.ICMP != "" || p.Bad || p.Dup {
				continue
			}
			fromCli := p.FromOrig == c.ClientIsOrig
			d := 0
			if !fromCli {
				d = 1
			}
			if !have[d] {
				isn[d], have[d] = p.Seq, true
			}
			k := pktKey{fromCli: fromCli, flags: p.Flags &^ packet.PSH, relSeq: p.Seq - isn[d], ln: p.Len, tsval: p.TSval}
			if p.Flags&packet.ACK != 0 && have[1-d] {
				k.relAck = p.Ack - isn[1-d]
			}
			k.nth = seen[k]
			seen[k]++
			ks = append(ks, k)
			ps = append(ps, p)
		}
		return ks, ps
	}
	ck, cp := keys(cli)
	sk, sp := keys(srv)
	sIdx := map[pktKey]int{}
	for i, k := range sk {
		sIdx[k] = i
	}
	matchedS := make([]bool, len(sk))
	var out []PacketFate
	for i, k := range ck {
		p := cp[i]
		f := PacketFate{FromClient: k.fromCli, Flags: FlagString(p.Flags), RelSeq: k.relSeq, Len: k.ln, ClientTS: float64(p.TS) / 1e9, Index: p.Index}
		if j, ok := sIdx[k]; ok && !matchedS[j] {
			matchedS[j] = true
			f.ServerTS = float64(sp[j].TS) / 1e9
			f.Fate = string(DeathDelivered)
			if k.fromCli {
				*cs = append(*cs, sp[j].TS-p.TS)
			} else {
				*sc = append(*sc, p.TS-sp[j].TS)
			}
		} else if k.fromCli {
			f.Fate = string(DeathLostToServer)
		} else {
			f.Fate = "not-sent" // arrived at the client, never left the server
		}
		out = append(out, f)
	}
	for j, k := range sk {
		if matchedS[j] {
			continue
		}
		p := sp[j]
		f := PacketFate{FromClient: k.fromCli, Flags: FlagString(p.Flags), RelSeq: k.relSeq, Len: k.ln, ServerTS: float64(p.TS) / 1e9, Index: p.Index}
		if k.fromCli {
			f.Fate = "not-sent"
		} else {
			f.Fate = string(DeathLostToClient)
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(a, b int) bool { return pfTime(out[a]) < pfTime(out[b]) })
	return out
}

func pfTime(f PacketFate) float64 {
	if f.ClientTS != 0 {
		return f.ClientTS
	}
	return f.ServerTS
}

// outsideSpan reports whether every SYN of cli (client clock, moved to
// the server's by offset) falls outside the server capture's span.
func outsideSpan(cli *Conn, span [2]int64, offset int64, offsetKnown bool) (string, bool) {
	if len(cli.synTimes) == 0 {
		return "", false
	}
	for _, t := range cli.synTimes {
		if st := t + offset; st >= span[0] && st <= span[1] {
			return "", false
		}
	}
	clock := "clock offset from the paired connections"
	if !offsetKnown {
		clock = "no connection pairs, so the clocks are assumed equal"
	}
	when := "before the server capture began"
	if cli.synTimes[0]+offset > span[1] {
		when = "after the server capture ended"
	}
	return fmt.Sprintf("its %d SYN(s) were sent %s (%s): the server capture cannot show it", len(cli.synTimes), when, clock), true
}

// deathOf says where a connection died, and the catalog cause when the
// captures show it.
func deathOf(cli, srv *Conn, pk []PacketFate) (Death, string, causes.ID) {
	if cli.rstAnswer {
		if srv != nil && srv.rstAnswer {
			return DeathRefused, "the server answered the SYN with RST (nothing listening)", causes.NoListener
		}
		return DeathRefused, "the client got a RST for its SYN that the server capture does not show (a middlebox or firewall reject)", causes.FirewallDrop
	}
	if cli.Verdict == VerdictEstablished && srv != nil && srv.Verdict == VerdictEstablished {
		return DeathDelivered, "handshake completed on both sides", ""
	}
	if srv == nil {
		if len(cli.synackTimes) > 0 || cli.cliAcks {
			return DeathNotCaptured, "the client was answered, but the server capture has no such connection: it went to a host or interface the server capture does not see", ""
		}
		d := fmt.Sprintf("%d SYN(s) left the client; none reached the server", cli.SynAttempts)
		if cli.icmp != "" {
			d += "; the client got ICMP " + cli.icmp
		}
		return DeathLostToServer, d, cli.icmpCause
	}
	srvAnswers, srvLost := 0, 0
	for _, f := range pk {
		if !f.FromClient && f.ServerTS != 0 {
			srvAnswers++
			if f.Fate == string(DeathLostToClient) {
				srvLost++
			}
		}
	}
	switch {
	case srv.rstAnswer:
		if srvLost > 0 {
			return DeathLostToClient, "the server's RST never reached the client", causes.NoListener
		}
		return DeathRefused, "the server answered the SYN with RST", causes.NoListener
	case srv.Verdict == VerdictAckInsteadOfSA:
		return DeathServerSilent, "the server answered the SYN with a bare ACK (a TIME_WAIT socket or a PAWS reject), not a SYN-ACK", causes.PAWSReject
	case srvAnswers == 0:
		d := fmt.Sprintf("%d SYN(s) reached the server; nothing left it in reply", srv.SynAttempts)
		if srv.icmp != "" {
			return DeathServerSilent, d + "; ICMP " + srv.icmp + " at the server", srv.icmpCause
		}
		return DeathServerSilent, d + " (the capture cannot tell which kernel check dropped them: run synscope doctor or trace on the server)", ""
	case srvLost == srvAnswers:
		return DeathLostToClient, fmt.Sprintf("%d answer(s) left the server; none reached the client", srvAnswers), cli.icmpCause
	case len(cli.synackTimes) > 0 && cli.ackTime != 0 && srv.ackTime == 0:
		return DeathLostToServer, "the client's final ACK never reached the server", ""
	case cli.Verdict == VerdictEstablished || srv.Verdict == VerdictEstablished:
		return DeathDelivered, "handshake completed", ""
	case len(cli.synackTimes) > 0 && cli.ackTime == 0 && !cli.cliRST:
		return DeathLostToClient, "the SYN-ACK reached the client's interface but the client never answered it: dropped inside the client (input firewall, rp_filter, ...)", causes.SynackUnanswered
	}
	return DeathUnknown, fmt.Sprintf("client verdict %s, server verdict %s", cli.Verdict, srv.Verdict), ""
}

// Failed counts connections that did not get through.
func (c *Comparison) Failed() int {
	n := 0
	for _, p := range c.Connections {
		if p.Death != DeathDelivered && p.Death != DeathNotCaptured {
			n++
		}
	}
	return n
}

// WriteJSON writes the comparison as JSON.
func (c *Comparison) WriteJSON(w io.Writer) error {
	c.Version = buildinfo.Get()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("encode comparison: %w", err)
	}
	return nil
}

// WriteText writes a summary and one line per connection.
func (c *Comparison) WriteText(w io.Writer) {
	fmt.Fprintf(w, "client %s vs server %s\nclock offset (server - client): %+.6f s (%s)\n", safetext.Show(c.ClientFile), safetext.Show(c.ServerFile), c.ClockOffset, c.OffsetFrom)
	fmt.Fprint(w, "deaths:")
	for _, s := range c.Summary {
		fmt.Fprintf(w, " %s=%d", s.Name, s.Count)
	}
	fmt.Fprintf(w, "  (server-only connections: %d)\n\n", c.ServerOnly)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCLIENT SIDE\tSERVER SIDE\tDEATH\tCAUSE\tDETAIL")
	for _, p := range c.Connections {
		srv := "-"
		if p.ServerTuple != nil {
			srv = hostPort(p.ServerTuple.OrigH, p.ServerTuple.OrigP) + " > " + hostPort(p.ServerTuple.RespH, p.ServerTuple.RespP)
		}
		cause := string(p.Cause)
		if cause == "" {
			cause = "-"
		}
		fmt.Fprintf(tw, "%d\t%s > %s\t%s\t%s\t%s\t%s\n", p.ID, hostPort(p.ClientTuple.OrigH, p.ClientTuple.OrigP),
			hostPort(p.ClientTuple.RespH, p.ClientTuple.RespP), srv, p.Death, cause, p.Detail)
	}
	_ = tw.Flush()
}
