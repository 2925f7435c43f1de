#!/usr/bin/env bash
# Load benchmark for synscope's live modes (trace, watch --syn-trace on,
# doctor) against a baseline without synscope. Builds synscope and the
# harness, then runs the harness as root; it takes the flock
# /tmp/synscope-ns.lock itself (do not wrap it in flock), builds and
# deletes its own namespaces, and prints a table (JSON with -json FILE).
#
#   bench/load/run.sh                                   # 3 rounds of 5 s phases
#   bench/load/run.sh -rounds 5 -duration 10s -json /tmp/load.json
#   bench/load/run.sh -modes doctor -kube-services 2500 # doctor at 5,000 iptables-nft rules
#
# Every flag: go run ./bench/load -h
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
go build -o "$DIR/synscope" ./cmd/synscope
go build -o "$DIR/load" ./bench/load
"$DIR/load" -bin "$DIR/synscope" "$@"
