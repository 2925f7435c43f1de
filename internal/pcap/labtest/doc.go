// Package labtest holds the kernel test for `synscope pcap --client
// --server`: it captures a lab scenario on both sides with AF_PACKET
// (through NAT, with the server clock shifted) and checks that the
// comparison names the right place of death. It has no non-test code.
package labtest
