// Command vm boots a Debian kernel in a throw-away QEMU (TCG) virtual machine
// and runs one program inside it, with the host's root file system visible
// read-only under a tmpfs overlay. It prints the program's output and exits
// with its status, so it works as `go test -exec`:
//
//	go build -o /tmp/vm ./test/vm
//	go test -exec '/tmp/vm -kernel 6.1' ./internal/trace
//
// Kernels are selected by series ("5.10", "6.1", "6.12"): the newest Debian
// linux-image-*-amd64-unsigned package of that series in the apt index is
// downloaded (apt-get download), unpacked (dpkg-deb -x) and prepared once
// into -cache (default /var/cache/synscope-vm). The host's index (Debian
// bookworm) carries 6.1 and 6.12; a series from an older release (5.10:
// Debian 11, bullseye) is read from that suite's index through a private
// apt configuration (APT_CONFIG) kept in -cache/apt-SUITE, so the host's
// /etc/apt is left alone (apt.go). "-kernel host" runs the program
// directly, without a VM.
//
// This is test tooling: it shells out to apt-get, dpkg-deb, xz, cpio and
// qemu-system-x86_64 (see .ci/run for the packages). The measured recipe and
// its pitfalls are in ../shared/reference/kernel-matrix.md: KVM cannot boot
// stock kernels on our machines, so QEMU emulates (TCG); the uncompressed
// vmlinux boots via PVH with qboot; results come back on a second 9p share
// (the virtio console loses output); QEMU runs under its own timeout and
// dies with the runner (SIGKILL of the runner included). TCG runs single-
// threaded by default: with one host thread per vCPU a 6.12 guest once
// panicked executing kernel text that was being live-patched (a tracepoint
// being enabled), and on our 2-core machines single was faster anyway
// (65 s against 87 s for the CI trace subset).
//
// Exit status: the program's, or 125 when the VM could not run it (no
// status came back: boot failure, timeout), with the console's tail on
// stderr.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

const exitVMFailed = 125

func main() {
	fs := flag.NewFlagSet("vm", flag.ContinueOnError)
	kernel := fs.String("kernel", envOr("SYNSCOPE_VM_KERNEL", "6.12"), "kernel series to boot (5.10, 6.1, 6.12, …) or 'host' to run without a VM")
	cache := fs.String("cache", envOr("SYNSCOPE_VM_CACHE", "/var/cache/synscope-vm"), "where kernels and initramfs images are kept")
	timeout := fs.Duration("timeout", envDur("SYNSCOPE_VM_TIMEOUT", 30*time.Minute), "kill the VM after this long")
	mem := fs.Int("mem", 2048, "guest memory in MiB")
	smp := fs.Int("smp", 2, "guest CPUs")
	tcg := fs.String("tcg-thread", envOr("SYNSCOPE_VM_TCG_THREAD", "single"), "QEMU TCG threading: single (one host thread runs every vCPU in turn) or multi (one per vCPU; a 6.12 guest once panicked in code the kernel was live-patching while attaching a tracepoint)")
	prepare := fs.Bool("prepare", false, "only fetch and prepare the kernel, print its version")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: vm [-kernel SERIES] [-cache DIR] [-timeout D] PROGRAM [ARG...]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if !*prepare && fs.NArg() == 0 {
		fs.Usage()
		os.Exit(2)
	}
	if *kernel == "host" {
		os.Exit(runHost(fs.Args()))
	}
	k, err := Prepare(*cache, *kernel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vm: kernel %s: %v\n", *kernel, err)
		os.Exit(exitVMFailed)
	}
	if *prepare {
		fmt.Println(k.Version)
		return
	}
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vm: %v\n", err)
		os.Exit(exitVMFailed)
	}
	res, err := Run(k, Job{
		Args:    fs.Args(),
		Dir:     cwd,
		Env:     os.Environ(),
		Timeout: *timeout,
		MemMiB:  *mem,
		CPUs:    *smp,
		TCG:     *tcg,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "vm: kernel %s: %v\n", k.Version, err)
		os.Exit(exitVMFailed)
	}
	os.Exit(res.Status)
}

// runHost runs args directly (the host kernel column of the matrix).
func runHost(args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signal.Ignore(syscall.SIGINT)
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		return 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
	}
	fmt.Fprintf(os.Stderr, "vm: %v\n", err)
	return exitVMFailed
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envDur(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(k)); err == nil && d > 0 {
		return d
	}
	return def
}
