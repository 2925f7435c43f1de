package labtest

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/pcap"
)

func TestMain(m *testing.M) {
	// lab.Up re-executes this binary as its listener/client agents.
	lab.MaybeRunAgent()
	os.Exit(m.Run())
}

const serverShift = 3200 * time.Millisecond

// TestLabPlaceOfDeath captures each scenario on the client (c0) and the
// server (s0), the server clock shifted by +3.2 s, and checks what
// `synscope pcap --client --server` says.
func TestLabPlaceOfDeath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and opens AF_PACKET sockets")
	}
	cases := []struct {
		scenario string
		nat      bool
		want     pcap.Death
	}{
		// With NAT the server answers the router's on-link address, which
		// hides a missing default route, so this one runs without NAT.
		{"missing-default-route-v4", false, pcap.DeathServerSilent},
		{"synack-unanswered", true, pcap.DeathLostToClient},
		{"firewall-drop-syn", true, pcap.DeathServerSilent},
		{"healthy", true, pcap.DeathDelivered},
	}
	for i, tc := range cases {
		t.Run(tc.scenario, func(t *testing.T) {
			sc, err := lab.Lookup(tc.scenario)
			if err != nil {
				t.Fatalf("lab has no scenario %s (renamed?): %v", tc.scenario, err)
			}
			prefix := fmt.Sprintf("pc%d-%d", os.Getpid()%100000, i)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			env, err := lab.Up(ctx, tc.scenario, lab.Options{Prefix: prefix, NAT: tc.nat, NoClient: true})
			if err != nil {
				t.Fatalf("lab up %s: %v", tc.scenario, err)
			}
			t.Cleanup(func() {
				if err := lab.Down(prefix); err != nil {
					t.Errorf("lab down: %v", err)
				}
			})
			cs, err := startSniffer(env.Client, "c0", 0)
			if err != nil {
				t.Fatal(err)
			}
			ss, err := startSniffer(env.Server, "s0", serverShift)
			if err != nil {
				t.Fatal(err)
			}
			// Three bounded dials; each gives up after 3.5 s (SYNs at 0, 1, 3 s).
			for range 3 {
				err := env.Dial(ctx, 4, 3500*time.Millisecond)
				if (err == nil) != (tc.want == pcap.DeathDelivered) {
					t.Logf("dial: %v", err)
				}
			}
			time.Sleep(300 * time.Millisecond) // let late retransmissions land
			dir := t.TempDir()
			cf, sf := filepath.Join(dir, "client.pcapng"), filepath.Join(dir, "server.pcapng")
			nc, err := cs.finish(cf)
			if err != nil {
				t.Fatal(err)
			}
			ns, err := ss.finish(sf)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("captured %d client-side and %d server-side frames", nc, ns)
			cmp, err := pcap.CompareFiles(cf, sf, pcap.Config{Filter: mustFilter(t, "8080")})
			if err != nil {
				t.Fatal(err)
			}
			if len(cmp.Connections) < 3 {
				t.Fatalf("%d connections compared, want at least the 3 dials", len(cmp.Connections))
			}
			for _, p := range cmp.Connections {
				if p.Death != tc.want {
					t.Errorf("%s: client %s:%d death %s (%s), want %s", tc.scenario, p.ClientTuple.OrigH, p.ClientTuple.OrigP, p.Death, p.Detail, tc.want)
				}
				// Where the captures name a cause it is the scenario's
				// (the one doctor and trace name); where they cannot tell
				// (a SYN the server's kernel dropped) they name none.
				wantCause := sc.Expect
				if tc.want == pcap.DeathServerSilent {
					wantCause = ""
				}
				if p.Cause != wantCause {
					t.Errorf("%s: client %s:%d cause %q, want %q", tc.scenario, p.ClientTuple.OrigH, p.ClientTuple.OrigP, p.Cause, wantCause)
				}
				if tc.nat && p.ServerTuple != nil && p.ServerTuple.OrigH != "10.77.2.1" {
					t.Errorf("NAT: server side saw %s, want the router 10.77.2.1", p.ServerTuple.OrigH)
				}
			}
			if math.Abs(cmp.ClockOffset-serverShift.Seconds()) > 0.1 {
				t.Errorf("clock offset %.6f s, want about %.1f (%s)", cmp.ClockOffset, serverShift.Seconds(), cmp.OffsetFrom)
			}
			t.Logf("clock offset %.6f s (%s); deaths %v", cmp.ClockOffset, cmp.OffsetFrom, cmp.Summary)
		})
	}
}

func mustFilter(t *testing.T, s string) *pcap.Filter {
	t.Helper()
	f, err := pcap.ParseFilter(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
