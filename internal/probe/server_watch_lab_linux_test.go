package probe

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/synscope/synscope/internal/causes"
	"github.com/synscope/synscope/internal/fateapi"
	"github.com/synscope/synscope/internal/lab"
	"github.com/synscope/synscope/internal/netns"
	"github.com/synscope/synscope/internal/watch"
)

// labWatch is a watch --fate-api serving from inside the lab server's
// namespace over TLS with basic auth, and the client files to reach it.
type labWatch struct {
	url     string
	good    string // --server-config with the CA and the right password
	noAuth  string // the CA, no credentials
	badPass string // the CA, a wrong password
	log     *lockedLog
}

// startLabWatch starts watch --fate-api for env's server namespace: a
// self-signed certificate for the server's IPv4 address (reachable from
// the client whatever IPv6 fault the scenario has), a bcrypt basic-auth
// user, the SYN tracer required.
func startLabWatch(t *testing.T, env *lab.Env) *labWatch {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lab-watch"},
		IPAddresses: []net.IP{env.ServerV4.AsSlice()}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("tls.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	write("tls.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	webCfg := write("web.yml", "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  probe: "+string(hash)+"\n")
	w := &labWatch{
		good:    write("good.yml", "tls_config:\n  ca_file: tls.crt\nbasic_auth:\n  username: probe\n  password_file: pass\n"),
		noAuth:  write("noauth.yml", "tls_config:\n  ca_file: tls.crt\n"),
		badPass: write("bad.yml", "tls_config:\n  ca_file: tls.crt\nbasic_auth:\n  username: probe\n  password: wrong\n"),
		log:     &lockedLog{},
	}
	write("pass", "s3cret\n")

	srv, err := netns.Open(env.Server)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var ln net.Listener
	if err := srv.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(env.ServerV4, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	lg, err := watch.NewLogger(w.log, "json")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- watch.Run(ctx, watch.Options{Netns: []string{env.Server}, Listener: ln, WebConfigFile: webCfg,
			FateAPI: true, SYNTrace: watch.SYNTraceOn, Interval: time.Minute, Logger: lg,
			Ready: func(a net.Addr) { ready <- a }})
	}()
	select {
	case a := <-ready:
		w.url = "https://" + a.String()
	case err := <-done:
		cancel()
		t.Fatalf("watch did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("watch not ready within 20s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("watch: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("watch did not stop within 10s")
		}
		t.Logf("watch log:\n%s", w.log.String())
	})
	return w
}

// lockedLog is the watch log, written by the daemon and read by the test.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The seed case through watch over TLS with basic auth: the verdict
// names no-route-to-peer on the server, confirmed by its kernel, with
// the server's fix; without credentials (or with a wrong password) the
// watch refuses and the server side is "not checked", never "absent".
func TestProbeServerWatchNoRouteToPeer(t *testing.T) {
	env := labUp(t, "missing-default-route-v6", "w6")
	w := startLabWatch(t, env)
	withWatch := func(cfg string) func(*Options) {
		return func(o *Options) { o.Server, o.ServerConfig = w.url, cfg }
	}
	rep := labProbe(t, env, 6, withWatch(w.good))
	if s := rep.Server; s == nil || s.Status != ServerChecked || s.Via != ServerViaWatch || s.Netns != env.Server || s.Endpoint != w.url {
		t.Fatalf("server side: %+v", rep.Server)
	}
	if rep.Verdict != Confirmed || rep.Cause != causes.NoRouteToPeer {
		t.Fatalf("verdict %s [%s], want confirmed [no-route-to-peer]: %s", rep.Verdict, rep.Cause, rep.Summary)
	}
	if !strings.Contains(rep.Summary, "arrived, consumed: no route back to the client for the SYN-ACK") {
		t.Errorf("summary does not say what the server did: %s", rep.Summary)
	}
	if !strings.Contains(rep.Next, "on the server (the host of "+w.url+", netns "+env.Server) || !strings.Contains(rep.NextCmd, "--netns "+env.Server) {
		t.Errorf("fix is not the server's: %q / %q", rep.Next, rep.NextCmd)
	}
	for _, at := range rep.Addresses[0].Attempts {
		if at.Server == nil || !at.Server.Seen || at.Server.Cause != causes.NoRouteToPeer || at.LocalPort == 0 {
			t.Errorf("attempt %d (sport %d): server view %+v", at.Seq, at.LocalPort, at.Server)
		}
	}
	if rep.ExitCode() != 1 {
		t.Errorf("exit %d, want 1", rep.ExitCode())
	}
	// --raw: the ports are the raw attempts' own reservations.
	rep = labProbe(t, env, 6, func(o *Options) { withWatch(w.good)(o); o.Raw = true })
	if rep.Target.Mode != ModeRaw || rep.Verdict != Confirmed || rep.Cause != causes.NoRouteToPeer {
		t.Fatalf("raw: mode %s verdict %s [%s]: %s", rep.Target.Mode, rep.Verdict, rep.Cause, rep.Summary)
	}
	for _, at := range rep.Addresses[0].Attempts {
		if at.Server == nil || !at.Server.Seen || at.Server.SYNs != 1 {
			t.Errorf("raw attempt %d (sport %d): server view %+v", at.Seq, at.LocalPort, at.Server)
		}
	}

	for _, cfg := range []string{w.noAuth, w.badPass} {
		rep = labProbe(t, env, 6, withWatch(cfg))
		s := rep.Server
		if s == nil || s.Status != ServerNotChecked || !strings.Contains(s.Reason, "refused the credentials (HTTP 401") {
			t.Fatalf("%s: server side %+v", filepath.Base(cfg), s)
		}
		if rep.Verdict == Confirmed || rep.ExitCode() != 1 {
			t.Errorf("%s: verdict %s exit %d without the server's word", filepath.Base(cfg), rep.Verdict, rep.ExitCode())
		}
		for _, at := range rep.Addresses[0].Attempts {
			if at.Server == nil || at.Server.Checked || !strings.HasPrefix(at.Server.Text, "not checked: ") {
				t.Errorf("%s: attempt %d: %+v", filepath.Base(cfg), at.Seq, at.Server)
			}
		}
	}
	if !strings.Contains(w.log.String(), `"msg":"fate request served"`) {
		t.Errorf("the served request was not logged")
	}
}

// Flow scoping with real traffic: two requests at once, each naming its
// own flows; handshakes from both sets of flows, and from a port and an
// address neither named, run while they listen. Each answer holds its
// own flows' fates and nothing else.
func TestProbeServerWatchScoping(t *testing.T) {
	env := labUp(t, "missing-default-route-v6", "ws")
	w := startLabWatch(t, env)
	cli, err := netns.Open(env.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	other := netip.MustParseAddr("10.77.1.3")
	ipIn(t, env.Client, "addr", "add", other.String()+"/24", "dev", "c0")
	srv := netip.AddrPortFrom(env.ServerV4, env.Port)

	reserve := func(a netip.Addr) *reservedPort {
		r, err := reservePort(cli, a)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// A: two flows from the client's address; B: one from the same
	// address, and B's port number from the other address (not named).
	a1, a2, b1 := reserve(env.ClientV4), reserve(env.ClientV4), reserve(env.ClientV4)
	bOther := reserve(other)
	unnamed := reserve(env.ClientV4)
	flowsA := []string{netip.AddrPortFrom(env.ClientV4, a1.port).String(), netip.AddrPortFrom(env.ClientV4, a2.port).String()}
	flowsB := []string{netip.AddrPortFrom(env.ClientV4, b1.port).String()}

	client, err := serverClient(w.good, cli)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		lines []fateapi.Line
		err   error
	}
	ask := func(flows []string, armed chan<- struct{}, out chan<- answer) {
		body, _ := json.Marshal(fateapi.Request{Flows: flows, ServerPort: env.Port, DurationMS: 3000})
		resp, err := client.Post(w.url+fateapi.Path, "application/json", strings.NewReader(string(body)))
		if err != nil {
			out <- answer{err: err}
			close(armed)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			out <- answer{err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)}
			close(armed)
			return
		}
		var a answer
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l fateapi.Line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				a.err = err
				break
			}
			a.lines = append(a.lines, l)
			if l.Type == fateapi.LineArmed {
				close(armed)
			}
		}
		out <- a
	}
	armA, armB := make(chan struct{}), make(chan struct{})
	outA, outB := make(chan answer, 1), make(chan answer, 1)
	go ask(flowsA, armA, outA)
	go ask(flowsB, armB, outB)
	<-armA
	<-armB
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, r := range []*reservedPort{a1, a2, b1, bOther, unnamed} {
		res := dialOnce(ctx, dialSpec{t: cli, dst: srv, timeout: 2 * time.Second, resv: r.take()})
		if res.outcome != OutConnected {
			t.Fatalf("handshake from port %d: %s %s", res.lport, res.outcome, res.err)
		}
	}
	// B's port number from the other address: same port, not B's flow.
	r, err := bindPort(cli, other, b1.port)
	if err != nil {
		t.Fatalf("binding %s:%d: %v", other, b1.port, err)
	}
	if res := dialOnce(ctx, dialSpec{t: cli, dst: srv, timeout: 2 * time.Second, resv: r}); res.outcome != OutConnected {
		t.Fatalf("handshake from %s:%d: %s %s", other, b1.port, res.outcome, res.err)
	}
	check := func(name string, out chan answer, want []string) {
		a := <-out
		if a.err != nil {
			t.Fatalf("%s: %v", name, a.err)
		}
		got := map[string]int{}
		for _, l := range a.lines {
			if l.Type == fateapi.LineFate {
				if l.Fate.Fate != "established" {
					t.Errorf("%s: %+v", name, l.Fate)
				}
				got[l.Fate.Client]++
			}
		}
		for _, f := range want {
			if got[f] == 0 {
				t.Errorf("%s: no fate for its own flow %s (lines %+v)", name, f, a.lines)
			}
			delete(got, f)
		}
		if len(got) > 0 {
			t.Errorf("%s: fates of flows it did not name: %v", name, got)
		}
		if last := a.lines[len(a.lines)-1]; last.Type != fateapi.LineDone || last.Reason != fateapi.DoneDuration {
			t.Errorf("%s: last line %+v", name, last)
		}
	}
	check("A", outA, flowsA)
	check("B", outB, flowsB)
}

// bindPort binds a socket to addr:port in t (for a flow that reuses a
// named port number from another address).
func bindPort(t *netns.Target, addr netip.Addr, port uint16) (*reservedPort, error) {
	r := &reservedPort{fd: -1, port: port}
	err := t.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		r.fd = fd
		return unix.Bind(fd, sockaddr(netip.AddrPortFrom(addr, port)))
	})
	if err != nil {
		if r.fd >= 0 {
			unix.Close(r.fd)
		}
		return nil, err
	}
	return r, nil
}

// Healthy control through the endpoint: connected, every attempt
// established at the server, exit 0.
func TestProbeServerWatchHealthy(t *testing.T) {
	env := labUp(t, "healthy", "wok")
	w := startLabWatch(t, env)
	rep := labProbe(t, env, 4, func(o *Options) { o.Server, o.ServerConfig = w.url, w.good })
	if rep.Verdict != Connected || rep.ExitCode() != 0 {
		t.Fatalf("healthy: verdict %s exit %d: %s", rep.Verdict, rep.ExitCode(), rep.Summary)
	}
	if s := rep.Server; s == nil || s.Status != ServerChecked || s.Via != ServerViaWatch {
		t.Fatalf("server side: %+v", rep.Server)
	}
	for _, at := range rep.Addresses[0].Attempts {
		if at.Server == nil || !at.Server.Seen || at.Server.Fate != "established" {
			t.Errorf("healthy attempt %d: server view %+v", at.Seq, at.Server)
		}
	}
}
