package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Job is one program to run in a guest.
type Job struct {
	Args    []string
	Dir     string   // working directory (a host path, seen through the overlay)
	Env     []string // the program's whole environment
	Timeout time.Duration
	MemMiB  int
	CPUs    int
	TCG     string // "single" or "multi" (QEMU -accel tcg,thread=)
	Stdout  io.Writer
	Stderr  io.Writer
}

// Result is how the program ended in the guest.
type Result struct {
	Status int
	Boot   time.Duration // QEMU start to the program's start
	Total  time.Duration
}

// initScript is the initramfs's /init (busybox sh). It mounts the host's /
// read-only over 9p with a tmpfs overlay on top, the run directory (a
// second, writable 9p share) at its host path, the guest kernel's modules
// at /lib/modules/$(uname -r), then chroots and runs the job script there.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules); do insmod /lib/modules/$m 2>/dev/null; done
rundir= moddir= config=
for a in $(cat /proc/cmdline); do
	case $a in
	synscope.rundir=*) rundir=${a#*=} ;;
	synscope.moddir=*) moddir=${a#*=} ;;
	synscope.config=*) config=${a#*=} ;;
	esac
done
fail() { echo "vm init: $*"; reboot -f; sleep 10; }
mkdir -p /mnt/lower /mnt/rw /mnt/root
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /mnt/lower || fail "mount host root"
mount -t tmpfs -o mode=755 tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /mnt/root || fail "mount overlay"
R=/mnt/root
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs tmpfs $R/run
mount -t bpf bpf $R/sys/fs/bpf
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
v=$(uname -r)
mkdir -p $R/lib/modules/$v $R/boot
mount --bind $R$moddir $R/lib/modules/$v || fail "bind modules"
touch $R/boot/config-$v && mount --bind $R$config $R/boot/config-$v
# Module autoload: the kernel runs modprobe in its own root (this
# initramfs), not in the chroot; the job sees the same path there.
mkdir -p /lib/modules/$v /.vm $R/.vm
mount --bind $R$moddir /lib/modules/$v
ln -s /bin/busybox /.vm/modprobe
cp /bin/busybox $R/.vm/busybox
ln -s busybox $R/.vm/modprobe
echo /.vm/modprobe > /proc/sys/kernel/modprobe
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results $R$rundir || fail "mount results"
ip link set lo up
hostname synscope-vm
echo "vm init: running job" > /dev/console
chroot $R /bin/sh $rundir/job.sh
sync
reboot -f
sleep 10
`

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Run boots k and runs j in it.
func Run(k *Kernel, j Job) (Result, error) {
	var res Result
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return res, fmt.Errorf("qemu-system-x86 is needed: %w", err)
	}
	rundir, err := os.MkdirTemp("", "synscope-vm-")
	if err != nil {
		return res, fmt.Errorf("create run directory: %w", err)
	}
	defer os.RemoveAll(rundir)
	var job strings.Builder
	fmt.Fprintf(&job, "cd %s || { echo 125 > %s; exit; }\n", shq(j.Dir), shq(rundir+"/status"))
	fmt.Fprintf(&job, "date +%%s.%%N > %s\n", shq(rundir+"/started"))
	job.WriteString("env -i")
	for _, e := range j.Env {
		if strings.ContainsRune(e, '\n') || !strings.Contains(e, "=") {
			continue
		}
		job.WriteString(" " + shq(e))
	}
	for _, a := range j.Args {
		job.WriteString(" " + shq(a))
	}
	fmt.Fprintf(&job, " </dev/null >%s 2>%s\n", shq(rundir+"/stdout"), shq(rundir+"/stderr"))
	fmt.Fprintf(&job, "echo $? > %s\n", shq(rundir+"/status"))
	if err := os.WriteFile(filepath.Join(rundir, "job.sh"), []byte(job.String()), 0o644); err != nil {
		return res, fmt.Errorf("write job: %w", err)
	}
	for _, f := range []string{"stdout", "stderr"} {
		if err := os.WriteFile(filepath.Join(rundir, f), nil, 0o666); err != nil {
			return res, fmt.Errorf("create %s: %w", f, err)
		}
	}
	console := filepath.Join(rundir, "console.log")
	appendArgs := strings.Join([]string{
		"console=ttyS0", "panic=-1", "quiet", "loglevel=3", "mitigations=off",
		"synscope.rundir=" + rundir, "synscope.moddir=" + k.ModDir, "synscope.config=" + k.Config,
	}, " ")
	args := []string{
		"--signal=KILL", strconv.Itoa(int(j.Timeout.Seconds()) + 1), qemu,
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		"-accel", "tcg,thread=" + j.TCG, "-cpu", "max",
		"-m", strconv.Itoa(j.MemMiB), "-smp", strconv.Itoa(j.CPUs),
		"-bios", "/usr/share/qemu/qboot.rom",
		"-kernel", k.Vmlinux, "-initrd", k.Initrd, "-append", appendArgs,
		"-serial", "file:" + console,
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + rundir + ",mount_tag=results,security_model=none,multidevs=remap",
	}
	// timeout(1) kills QEMU when the VM hangs; Pdeathsig makes timeout (and
	// through it QEMU) go when this runner dies, even by SIGKILL.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("timeout", args...)
	var qout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &qout, &qout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start qemu: %w", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	out := follower{path: filepath.Join(rundir, "stdout"), w: j.Stdout}
	errf := follower{path: filepath.Join(rundir, "stderr"), w: j.Stderr}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		case s := <-sigs:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			waitErr = <-done
			out.copy()
			errf.copy()
			return res, fmt.Errorf("interrupted by %s", s)
		case <-tick.C:
			out.copy()
			errf.copy()
		}
	}
	out.copy()
	errf.copy()
	res.Total = time.Since(start)
	if b, err := os.ReadFile(filepath.Join(rundir, "started")); err == nil {
		if f, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil {
			res.Boot = time.Unix(0, int64(f*1e9)).Sub(start)
		}
	}
	b, err := os.ReadFile(filepath.Join(rundir, "status"))
	st, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || perr != nil {
		con, _ := os.ReadFile(console)
		// Keep the whole console (a panic's first lines are what matter).
		kept := filepath.Join(os.TempDir(), fmt.Sprintf("synscope-vm-console-%s-%d.log", k.Version, time.Now().Unix()))
		if os.WriteFile(kept, con, 0o644) == nil {
			qout.WriteString("(whole console kept in " + kept + ")\n")
		}
		why := errNoStatus
		if waitErr != nil {
			why = fmt.Errorf("%w (qemu: %v)", errNoStatus, waitErr)
		}
		return res, fmt.Errorf("%w after %s\n--- qemu:\n%s--- console (tail):\n%s", why, res.Total.Round(time.Millisecond), qout.String(), lastLines(string(con), 40))
	}
	res.Status = st
	if os.Getenv("SYNSCOPE_VM_VERBOSE") != "" {
		fmt.Fprintf(j.Stderr, "vm: %s: status %d, boot %s, total %s\n", k.Version, st, res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	}
	return res, nil
}

// follower copies what a guest appends to a 9p-shared file (9p writes are
// synchronous, so the host sees them as they happen).
type follower struct {
	path string
	off  int64
	w    io.Writer
}

func (f *follower) copy() {
	fh, err := os.Open(f.path)
	if err != nil {
		return
	}
	defer fh.Close()
	if _, err := fh.Seek(f.off, io.SeekStart); err != nil {
		return
	}
	n, _ := io.Copy(f.w, fh)
	f.off += n
}
