//go:build linux

package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// checkListen refuses a metrics endpoint that would serve namespace,
// process and listener names in clear text beyond this host: an address
// that is not loopback (or that binds every address) without a web
// configuration (TLS, basic auth), unless the operator said
// --insecure-listen. "" (no endpoint) is always fine.
func checkListen(listen, webConfig string, insecure bool) error {
	if listen == "" || webConfig != "" || insecure {
		return nil
	}
	if loopbackAddr(listen) {
		return nil
	}
	return fmt.Errorf("--listen %s is not a loopback address and no --web.config.file is set: /metrics would serve namespace, process and listener names in clear text to the network; set --web.config.file (TLS, basic auth) or say --insecure-listen", listen)
}

// loopbackAddr reports whether host:port names only loopback: a loopback
// IP or "localhost". An empty host binds every address; any other name
// may resolve to anything, so neither is loopback.
func loopbackAddr(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}
