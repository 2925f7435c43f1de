package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// Kernel is a prepared guest kernel: everything Run needs, cached on disk.
type Kernel struct {
	Series  string `json:"series"`  // "6.1"
	Package string `json:"package"` // linux-image-6.1.0-57-amd64-unsigned
	Version string `json:"version"` // uname -r: 6.1.0-57-amd64
	Dir     string `json:"dir"`
	Vmlinux string `json:"vmlinux"` // uncompressed ELF, booted via PVH
	Initrd  string `json:"-"`       // set by ensureInitrd
	ModDir  string `json:"moddir"`  // lib/modules/VERSION, decompressed, depmod'ed
	Config  string `json:"config"`
}

// initrdModules are what the initramfs loads to reach the host's root
// (their dependencies are added from modules.dep).
var initrdModules = []string{"virtio_pci", "9pnet_virtio", "9p", "overlay"}

// Prepare returns the newest Debian -amd64 kernel of series, fetching and
// preparing it into cache the first time. Without an apt index (offline) a
// kernel already prepared for the series is used.
func Prepare(cache, series string) (*Kernel, error) {
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+$`).MatchString(series) {
		return nil, fmt.Errorf("kernel series %q: want MAJOR.MINOR, e.g. 6.1", series)
	}
	sdir := filepath.Join(cache, series)
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	// One preparation at a time per series (go test -exec may start several
	// test binaries at once).
	lock, err := os.OpenFile(filepath.Join(sdir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	src, perr := sourceFor(cache, series)
	pkg := ""
	if perr == nil {
		pkg, perr = newestPackage(src, series)
	}
	if perr != nil {
		if k := newestPrepared(sdir); k != nil {
			return k, nil
		}
		return nil, perr
	}
	dir := filepath.Join(sdir, pkg)
	if k, err := readKernel(dir); err == nil {
		return k, ensureInitrd(k)
	}
	k, err := prepare(src, dir, series, pkg)
	if err != nil {
		return nil, err
	}
	// Keep one kernel per series: older ones are 0.5 GB each.
	ents, _ := os.ReadDir(sdir)
	for _, e := range ents {
		if e.IsDir() && e.Name() != pkg {
			_ = os.RemoveAll(filepath.Join(sdir, e.Name()))
		}
	}
	return k, nil
}

func readKernel(dir string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	return &k, nil
}

func newestPrepared(sdir string) *Kernel {
	ents, _ := os.ReadDir(sdir)
	for i := len(ents) - 1; i >= 0; i-- {
		if k, err := readKernel(filepath.Join(sdir, ents[i].Name())); err == nil && ensureInitrd(k) == nil {
			return k
		}
	}
	return nil
}

// newestPackage picks the generic -amd64 unsigned image of series with the
// highest Debian version in the apt index (exact ABI names come and go).
func newestPackage(src aptSource, series string) (string, error) {
	out, err := src.command("apt-cache", "pkgnames", "linux-image-").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache pkgnames: %w", err)
	}
	re := regexp.MustCompile(`^linux-image-(` + regexp.QuoteMeta(series) + `[.+-][0-9][^ ]*)-amd64-unsigned$`)
	var names []string
	for _, n := range strings.Fields(string(out)) {
		m := re.FindStringSubmatch(n)
		if m == nil || strings.HasSuffix(m[1], "-cloud") || strings.HasSuffix(m[1], "-rt") {
			continue
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no linux-image-%s*-amd64-unsigned package in the %s (apt-get update? Debian bookworm carries 6.1 and 6.12, bullseye 5.10)", series, src)
	}
	args := append([]string{"show", "--no-all-versions"}, names...)
	out, err = src.command("apt-cache", args...).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache show: %w", err)
	}
	vers := map[string]string{}
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if v, ok := strings.CutPrefix(l, "Package: "); ok {
			cur = v
		}
		if v, ok := strings.CutPrefix(l, "Version: "); ok && cur != "" {
			vers[cur] = v
		}
	}
	best := ""
	for _, n := range names {
		if vers[n] == "" {
			continue
		}
		if best == "" || exec.Command("dpkg", "--compare-versions", vers[n], "gt", vers[best]).Run() == nil {
			best = n
		}
	}
	if best == "" {
		return "", fmt.Errorf("no version known for %v", names)
	}
	return best, nil
}

func run(dir string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	return runCmd(cmd)
}

// runCmd runs cmd, with the tail of its stderr in the error.
func runCmd(cmd *exec.Cmd) error {
	name, args := cmd.Args[0], cmd.Args[1:]
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(lastLines(stderr.String(), 5)))
	}
	return nil
}

func prepare(src aptSource, dir, series, pkg string) (*Kernel, error) {
	_ = os.RemoveAll(dir)
	dl := filepath.Join(dir, "deb")
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dl, err)
	}
	fmt.Fprintf(os.Stderr, "vm: preparing %s in %s\n", pkg, dir)
	dlCmd := src.command("apt-get", "download", "-q", pkg)
	dlCmd.Dir = dl
	if err := runCmd(dlCmd); err != nil {
		return nil, err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	if err := run(dir, "dpkg-deb", "-x", debs[0], root); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(dl)
	mods, _ := os.ReadDir(filepath.Join(root, "lib/modules"))
	if len(mods) != 1 {
		return nil, fmt.Errorf("%s: want one lib/modules/VERSION, found %d", pkg, len(mods))
	}
	k := &Kernel{Series: series, Package: pkg, Version: mods[0].Name(), Dir: dir}
	k.ModDir = filepath.Join(root, "lib/modules", k.Version)
	k.Config = filepath.Join(root, "boot", "config-"+k.Version)
	k.Vmlinux = filepath.Join(dir, "vmlinux")
	if err := extractVmlinux(filepath.Join(root, "boot", "vmlinuz-"+k.Version), k.Vmlinux); err != nil {
		return nil, err
	}
	if err := decompressModules(k.ModDir); err != nil {
		return nil, err
	}
	if err := run(dir, "busybox", "depmod", "-b", root, k.Version); err != nil {
		return nil, err
	}
	if err := ensureInitrd(k); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "kernel.json"), b, 0o644); err != nil {
		return nil, fmt.Errorf("write kernel.json: %w", err)
	}
	return k, nil
}

// extractVmlinux finds the compressed payload in a bzImage and decompresses
// it to an ELF vmlinux (the kernel's scripts/extract-vmlinux method), which
// QEMU boots via PVH without the slow in-guest decompression.
func extractVmlinux(bz, out string) error {
	img, err := os.ReadFile(bz)
	if err != nil {
		return fmt.Errorf("read kernel image: %w", err)
	}
	formats := []struct {
		magic []byte
		cmd   []string
	}{
		{[]byte("\xfd7zXZ\x00"), []string{"xz", "-dc"}},
		{[]byte("\x28\xb5\x2f\xfd"), []string{"zstd", "-dcq"}},
		{[]byte("\x1f\x8b\x08"), []string{"gzip", "-dc"}},
	}
	for _, f := range formats {
		off := 0
		for tries := 0; tries < 8; tries++ {
			i := bytes.Index(img[off:], f.magic)
			if i < 0 {
				break
			}
			off += i
			cmd := exec.Command(f.cmd[0], f.cmd[1:]...)
			cmd.Stdin = bytes.NewReader(img[off:])
			// Trailing data after the stream makes the tools complain;
			// what counts is an ELF on stdout.
			elf, _ := cmd.Output()
			if len(elf) > 4<<20 && bytes.HasPrefix(elf, []byte("\x7fELF")) {
				if err := os.WriteFile(out, elf, 0o644); err != nil {
					return fmt.Errorf("write vmlinux: %w", err)
				}
				return nil
			}
			off++
		}
	}
	return fmt.Errorf("%s: no compressed ELF kernel found", bz)
}

// decompressModules unpacks .ko.xz / .ko.zst in place: busybox modprobe
// loads compressed modules only after a noisy failure.
func decompressModules(dir string) error {
	var xz, zst []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".ko.xz"):
			xz = append(xz, p)
		case strings.HasSuffix(p, ".ko.zst"):
			zst = append(zst, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk modules: %w", err)
	}
	batch := func(cmd []string, files []string) error {
		for len(files) > 0 {
			n := min(len(files), 400)
			if err := run(dir, cmd[0], append(cmd[1:], files[:n]...)...); err != nil {
				return err
			}
			files = files[n:]
		}
		return nil
	}
	if err := batch([]string{"xz", "-d", "-T0"}, xz); err != nil {
		return err
	}
	return batch([]string{"zstd", "-dq", "--rm"}, zst)
}

// moduleDeps reads modules.dep: module name (with '_') -> path and deps.
func moduleDeps(moddir string) (map[string]string, map[string][]string, error) {
	b, err := os.ReadFile(filepath.Join(moddir, "modules.dep"))
	if err != nil {
		return nil, nil, fmt.Errorf("read modules.dep: %w", err)
	}
	path := map[string]string{}
	deps := map[string][]string{}
	for _, l := range strings.Split(string(b), "\n") {
		mod, rest, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n := modName(mod)
		path[n] = mod
		for _, d := range strings.Fields(rest) {
			deps[n] = append(deps[n], modName(d))
		}
	}
	return path, deps, nil
}

func modName(p string) string {
	b := filepath.Base(p)
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// ensureInitrd points k.Initrd at an initramfs built from the current init
// script and module list, building it when missing (the name carries their
// hash, so a changed runner never boots a stale image).
func ensureInitrd(k *Kernel) error {
	h := sha256.Sum256([]byte(initScript + strings.Join(initrdModules, ",")))
	k.Initrd = filepath.Join(k.Dir, fmt.Sprintf("initramfs-%x.cpio", h[:6]))
	if _, err := os.Stat(k.Initrd); err == nil {
		return nil
	}
	old, _ := filepath.Glob(filepath.Join(k.Dir, "initramfs-*.cpio"))
	for _, o := range old {
		_ = os.Remove(o)
	}
	return buildInitrd(k)
}

// buildInitrd writes a newc cpio with static busybox, /init and the
// modules needed to mount the host's root over 9p with an overlay.
func buildInitrd(k *Kernel) error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is needed: %w", err)
	}
	if out, _ := exec.Command("file", "-L", busybox).Output(); len(out) > 0 && !bytes.Contains(out, []byte("statically linked")) && !bytes.Contains(out, []byte("static-pie")) {
		return fmt.Errorf("%s is not statically linked: install busybox-static", busybox)
	}
	path, deps, err := moduleDeps(k.ModDir)
	if err != nil {
		return err
	}
	var order []string
	seen := map[string]bool{}
	var add func(n string, depth int) error
	add = func(n string, depth int) error {
		if seen[n] {
			return nil
		}
		if depth > 32 {
			return fmt.Errorf("module dependency loop at %s", n)
		}
		seen[n] = true
		for _, d := range deps[n] {
			if err := add(d, depth+1); err != nil {
				return err
			}
		}
		if path[n] != "" {
			order = append(order, n)
		}
		return nil
	}
	for _, m := range initrdModules {
		if path[m] == "" && !builtin(k.ModDir, m) {
			return fmt.Errorf("module %s neither built in nor in modules.dep", m)
		}
		if err := add(m, 0); err != nil {
			return err
		}
	}
	stage, err := os.MkdirTemp(k.Dir, "initrd-")
	if err != nil {
		return fmt.Errorf("stage initrd: %w", err)
	}
	defer os.RemoveAll(stage)
	for _, d := range []string{"bin", "sbin", "proc", "sys", "dev", "mnt", "lib/modules", "etc"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return fmt.Errorf("stage initrd: %w", err)
		}
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read busybox: %w", err)
	}
	if err := os.WriteFile(filepath.Join(stage, "bin/busybox"), bb, 0o755); err != nil {
		return fmt.Errorf("stage busybox: %w", err)
	}
	var list []string
	for _, n := range order {
		b, err := os.ReadFile(filepath.Join(k.ModDir, path[n]))
		if err != nil {
			return fmt.Errorf("read module %s: %w", n, err)
		}
		if err := os.WriteFile(filepath.Join(stage, "lib/modules", n+".ko"), b, 0o644); err != nil {
			return fmt.Errorf("stage module %s: %w", n, err)
		}
		list = append(list, n+".ko")
	}
	if err := os.WriteFile(filepath.Join(stage, "etc/modules"), []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("stage module list: %w", err)
	}
	if err := os.WriteFile(filepath.Join(stage, "init"), []byte(initScript), 0o755); err != nil {
		return fmt.Errorf("stage init: %w", err)
	}
	var files []string
	err = filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != stage {
			rel, _ := filepath.Rel(stage, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk initrd: %w", err)
	}
	sort.Strings(files)
	tmp := k.Initrd + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create initrd: %w", err)
	}
	defer out.Close()
	cmd := exec.Command("cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0")
	cmd.Dir = stage
	cmd.Stdin = strings.NewReader(strings.Join(files, "\n") + "\n")
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cpio: %w: %s", err, stderr.String())
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write initrd: %w", err)
	}
	if err := os.Rename(tmp, k.Initrd); err != nil {
		return fmt.Errorf("install initrd: %w", err)
	}
	return nil
}

func builtin(moddir, name string) bool {
	b, err := os.ReadFile(filepath.Join(moddir, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && modName(l) == name {
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

var errNoStatus = errors.New("the guest reported no exit status")
