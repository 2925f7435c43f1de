.PHONY: generate

# Rebuild the committed BPF objects and Go bindings (needs clang and libbpf headers).
generate:
	go generate ./internal/trace/...
