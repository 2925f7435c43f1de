package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// Create makes a new named namespace (visible to `ip netns` as NAME, so
// `synscope doctor --netns NAME` works on it) with loopback up. Only the lab
// and tests call this: it changes the host.
func Create(name string) (*Target, error) {
	if err := prepareRunDir(); err != nil {
		return nil, fmt.Errorf("netns create %s: %w", name, err)
	}
	if _, err := os.Stat(filepath.Join(RunDir, name)); err == nil {
		return nil, fmt.Errorf("netns create %s: already exists", name)
	}
	err := func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		h, err := vnetns.NewNamed(name) // also switches this thread into it
		if err != nil {
			return err
		}
		h.Close()
		return vnetns.Set(orig)
	}()
	if err != nil {
		return nil, fmt.Errorf("netns create %s: %w", name, err)
	}
	t, err := Open(name)
	if err != nil {
		return nil, err
	}
	if err := t.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		_ = t.Delete()
		return nil, fmt.Errorf("netns create %s: loopback up: %w", name, err)
	}
	return t, nil
}

// Delete closes the handle and removes the name; the namespace itself goes
// away when the last process and socket in it are gone.
func (t *Target) Delete() error {
	_ = t.Close()
	if t.Name == "" {
		return fmt.Errorf("netns delete %s: not a named namespace", t.Label())
	}
	if err := vnetns.DeleteNamed(t.Name); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("netns delete %s: %w", t.Name, err)
	}
	return nil
}
