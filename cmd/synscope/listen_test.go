//go:build linux

package main

import (
	"strings"
	"testing"
)

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		listen, web string
		insecure    bool
		ok          bool
	}{
		{"127.0.0.1:9798", "", false, true},
		{"[::1]:9798", "", false, true},
		{"localhost:9798", "", false, true},
		{"127.8.9.10:1", "", false, true},
		{"[::ffff:127.0.0.1]:9798", "", false, true},
		{"", "", false, true},
		{"0.0.0.0:9798", "", false, false},
		{":9798", "", false, false},
		{"[::]:9798", "", false, false},
		{"192.0.2.1:9798", "", false, false},
		{"node.example:9798", "", false, false},
		{"[fe80::1%lo]:9798", "", false, false},
		{"garbage", "", false, false},
		{"192.0.2.1:9798", "/etc/web.yml", false, true},
		{"0.0.0.0:9798", "", true, true},
	} {
		err := checkListen(c.listen, c.web, c.insecure)
		if (err == nil) != c.ok {
			t.Errorf("checkListen(%q, %q, %v) = %v, want ok=%v", c.listen, c.web, c.insecure, err, c.ok)
		}
	}
}

// TestWatchRefusesCleartextListen runs the command: the refusal comes
// before watch starts (no privilege, no namespace needed), is one line
// that says why, and the exit code is 2.
func TestWatchRefusesCleartextListen(t *testing.T) {
	root := newRootCmd()
	root.SetArgs([]string{"watch", "--listen", "0.0.0.0:9798"})
	err := root.Execute()
	if err == nil {
		t.Fatal("watch --listen 0.0.0.0:9798 without a web config started")
	}
	msg := err.Error()
	for _, want := range []string{"0.0.0.0:9798", "clear text", "--web.config.file", "--insecure-listen", "namespace, process and listener names"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if code := run([]string{"watch", "--listen", ":9798"}); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}
