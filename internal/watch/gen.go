package watch

// The process-history BPF object and its Go bindings are committed so `go
// build` needs no clang; run `go generate ./internal/watch/` after editing
// bpf/proctrack.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type proc proctrack bpf/proctrack.c -- -I/usr/include/bpf -I/usr/include
