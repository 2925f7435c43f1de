package trace

// The BPF object and its Go bindings are committed so `go build` needs no
// clang; run `make generate` (or `go generate ./internal/trace/...`) after
// editing bpf/*.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type event synscope bpf/synscope.c -- -I/usr/include/bpf -I/usr/include
