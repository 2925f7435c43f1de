.PHONY: generate test

# Rebuild the committed BPF objects and Go bindings (needs clang and libbpf headers).
generate:
	go generate ./internal/trace/...

# The test suite (README "Test it"; .ci/run runs it): unit packages in
# parallel, kernel packages one at a time. See test/run.
test:
	bash test/run
