package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synscope/synscope/internal/probe"
)

// wineTools finds Debian's wine64 loader and wineserver (the wine64
// package installs them under /usr/lib/wine; the wine package adds the
// /usr/bin wrappers) and the MinGW compiler for the ProcessPrng DLL.
func wineTools(t *testing.T) (loader, server, cc string) {
	t.Helper()
	find := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		return ""
	}
	loader = find("wine64", "/usr/lib/wine/wine64")
	server = find("wineserver", "/usr/lib/wine/wineserver64", "/usr/lib/wine/wineserver")
	cc = find("x86_64-w64-mingw32-gcc")
	if loader == "" || server == "" || cc == "" {
		// CI installs both: there a missing tool fails, never hides the test.
		if os.Getenv("SYNSCOPE_REQUIRE_ROOT") == "1" {
			t.Fatal("wine64 or gcc-mingw-w64-x86-64 missing although .ci/run installs them")
		}
		t.Skip("needs wine64 and gcc-mingw-w64-x86-64 (.ci/run installs them)")
	}
	return loader, server, cc
}

// TestProbeWindowsUnderWine runs the Windows build of synscope probe
// (GOOS=windows, amd64) under Wine inside the lab's client namespace: a
// listening port connects, a closed port is refused, and a port whose SYNs
// the server's nftables input drops times out — with the exit codes, and
// the verdicts, of the Linux probe run in the same namespace. Wine's
// sockets are Linux sockets made by its wineserver, so wineboot and every
// run start inside the namespace.
//
// Debian 12's Wine 8.0 lacks bcryptprimitives.dll's ProcessPrng, which the
// Go runtime needs at start: the test builds test/wine/bcryptprimitives.c
// with MinGW into the prefix's system32 (never shipped).
func TestProbeWindowsUnderWine(t *testing.T) {
	needRoot(t)
	loader, server, cc := wineTools(t)
	dir := t.TempDir()
	exe := filepath.Join(dir, "synscope.exe")
	build := exec.Command("go", "build", "-o", exe, "../../cmd/synscope")
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows build: %v\n%s", err, out)
	}
	dll := filepath.Join(dir, "bcryptprimitives.dll")
	if out, err := exec.Command(cc, "-shared", "-O2", "-o", dll, "../wine/bcryptprimitives.c", "-ladvapi32").CombinedOutput(); err != nil {
		t.Fatalf("mingw: %v\n%s", err, out)
	}

	env := labUp(t, "healthy", "pr-wine", "--no-client")
	// The drop port: the server's input hook drops SYNs to 8082 (nothing
	// listens on 8081 or 8082, so without the rule 8082 would be refused).
	nftApply(t, env.Server, "table inet prwine { chain in { type filter hook input priority 0; tcp dport 8082 counter drop; }\n}\n")

	prefix := filepath.Join(dir, "prefix")
	wenv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "WINEPREFIX=" + prefix,
		"WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml="}
	inNS := func(ctx context.Context, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", env.Client}, args...)...)
		c.Env = wenv
		return c
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = inNS(ctx, server, "-k").Run()
	})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	out, err := inNS(ctx, loader, "wineboot", "-i").CombinedOutput()
	cancel()
	if err != nil {
		t.Fatalf("wineboot: %v\n%s", err, out)
	}
	t.Logf("wineboot -i: %v", time.Since(start).Round(time.Millisecond))
	sys32 := filepath.Join(prefix, "drive_c", "windows", "system32")
	b, err := os.ReadFile(dll)
	if err == nil {
		err = os.WriteFile(filepath.Join(sys32, "bcryptprimitives.dll"), b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}

	runWin := func(t *testing.T, target string) (*probe.Report, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := inNS(ctx, loader, exe, "probe", target, "--json", "--count", "2", "--interval", "50ms", "--timeout", "1s")
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("wine: %v", err)
		}
		var rep probe.Report
		if err := json.Unmarshal(so.Bytes(), &rep); err != nil {
			t.Fatalf("probe.exe %s: exit %d, not JSON: %v\n%s%s", target, code, err, so.String(), se.String())
		}
		if rep.Schema != probe.Schema || rep.Target.OS != "windows" {
			t.Fatalf("schema %q os %q: not the Windows build", rep.Schema, rep.Target.OS)
		}
		return &rep, code
	}
	cases := []struct {
		name, port string
		verdict    probe.Verdict
		outcome    probe.Outcome
		errText    string // the OS error the mapping names
		code       int
	}{
		{"listening", "8080", probe.Connected, probe.OutConnected, "", 0},
		{"closed", "8081", probe.Refused, probe.OutRefused, "WSAECONNREFUSED", 1},
		{"server-drops", "8082", probe.TimedOut, probe.OutTimeout, "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := env.ServerV4.String() + ":" + c.port
			rep, code := runWin(t, target)
			if rep.Verdict != c.verdict || code != c.code || len(rep.Addresses) != 1 {
				dumpProbe(t, rep)
				t.Fatalf("verdict %s exit %d, want %s exit %d", rep.Verdict, code, c.verdict, c.code)
			}
			a := rep.Addresses[0]
			if len(a.Attempts) != 2 {
				dumpProbe(t, rep)
				t.Fatalf("%d attempts, want 2", len(a.Attempts))
			}
			for _, at := range a.Attempts {
				if at.Outcome != c.outcome || !strings.Contains(at.Error, c.errText) {
					dumpProbe(t, rep)
					t.Fatalf("attempt %d: %s %q, want %s naming %q", at.Seq, at.Outcome, at.Error, c.outcome, c.errText)
				}
			}
			if a.Local.Source != env.ClientV4.String() {
				dumpProbe(t, rep)
				t.Fatalf("source %q, want the client's %s", a.Local.Source, env.ClientV4)
			}
			if c.verdict == probe.Refused && rep.Cause != "no-listener" {
				t.Fatalf("cause %q", rep.Cause)
			}
			if c.verdict != probe.Connected && !strings.HasPrefix(rep.NextCmd, "Test-NetConnection -ComputerName "+env.ServerV4.String()) {
				t.Fatalf("next command %q: want PowerShell's Test-NetConnection", rep.NextCmd)
			}
			// The Linux probe in the same namespace: same verdict, same exit.
			lrep, lr := probeJSON(t, nil, target, "--netns", env.Client, "--count", "2", "--interval", "50ms", "--timeout", "1s")
			if lrep.Verdict != rep.Verdict || lr.code != code {
				dumpProbe(t, lrep)
				t.Fatalf("Linux probe: verdict %s exit %d; Windows build: %s exit %d", lrep.Verdict, lr.code, rep.Verdict, code)
			}
		})
	}
}
