// Package lab builds client, router and server network namespaces joined by
// veth and injects named faults, so every cause can be reproduced on a real
// kernel.
package lab

// MaybeRunAgent runs a lab agent when this process was started as one. (stub)
func MaybeRunAgent() {}
