#!/usr/bin/env bash
# watch at node scale: `synscope watch --all-netns --syn-trace on` over 1,
# 100 and 500 namespaces (each with an uplink, default routes in both
# families and a listener), measuring idle CPU, RSS, /metrics scrape
# latency, series per namespace, route-loss detection latency, and
# namespaces created and deleted while it runs. Builds synscope and the
# harness, then runs the harness as root; it takes the flock
# /tmp/synscope-ns.lock itself (do not wrap it in flock) and deletes its
# namespaces (synscope-wscale-*) on exit.
#
#   bench/watchscale/run.sh                          # 1, 100, 500 namespaces
#   bench/watchscale/run.sh -sizes 100 -json /tmp/ws.json
#
# Every flag: go run ./bench/watchscale -h
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
go build -o "$DIR/synscope" ./cmd/synscope
go build -o "$DIR/watchscale" ./bench/watchscale
"$DIR/watchscale" -bin "$DIR/synscope" "$@"
