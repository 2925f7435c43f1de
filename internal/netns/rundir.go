package netns

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// prepareRunDir makes RunDir a shared mount point before a namespace is
// mounted in it, exactly as iproute2's `ip netns add` does (under the same
// flock on the directory, so the two cannot race each other).
//
// Why it matters: the first `ip netns add` on a machine finds RunDir a plain
// directory and bind-mounts it onto itself recursively. A namespace mounted
// there before that is then mounted twice, once on the directory below and
// once in the copy on top; deleting it (ours or `ip netns del`) unmounts only
// the top copy, and removing the name fails with EBUSY, leaking the
// namespace and its name. That happened when the integration tests ran
// `ip netns add` while lab namespaces of other tests were up. Making the
// mount point ourselves first means iproute2 only marks it shared again.
func prepareRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return err
	}
	lock, err := unix.Open(RunDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(lock)
	if err := unix.Flock(lock, unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", RunDir, err)
	}
	defer unix.Flock(lock, unix.LOCK_UN)
	for made := false; ; made = true {
		err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		// EINVAL: not a mount point yet. Anything else, or EINVAL after
		// making it one, is a real failure.
		if !errors.Is(err, unix.EINVAL) || made {
			return fmt.Errorf("making %s a shared mount: %w", RunDir, err)
		}
		if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s onto itself: %w", RunDir, err)
		}
	}
}
