.PHONY: build generate test matrix

# A static, reproducible binary in bin/synscope with its version, commit and
# date set from git (README "Install"; packaging/build says how).
build:
	bash packaging/build bin/synscope


# Rebuild the committed BPF objects and Go bindings (needs clang and libbpf headers).
generate:
	go generate ./internal/trace/...

# The test suite (README "Test it"; .ci/run runs it): unit packages in
# parallel, kernel packages one at a time. See test/run.
test:
	bash test/run

# The kernel matrix (docs/kernels.md): doctor, trace, watch and
# probe lab tests on the host kernel and on Debian's 5.10, 6.1 and 6.12
# kernels under QEMU (test/vm). MATRIX_KERNELS="6.1" picks kernels,
# MATRIX_FULL=1 runs every lab scenario instead of the CI subset. See
# test/matrix.
matrix:
	bash test/matrix
