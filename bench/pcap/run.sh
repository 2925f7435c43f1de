#!/usr/bin/env bash
# Benchmark synscope pcap against tshark on a generated capture.
#
#   bench/pcap/run.sh [SIZE] [FILE]
#
# SIZE defaults to 1G (the generator's -size syntax); FILE defaults to
# /tmp/synscope-bench.pcap and is reused when it already has that size.
# Both tools run single-core (GOMAXPROCS=1, taskset -c 0 when available)
# on a warm page cache; packets/s = packets in the file / wall seconds;
# max RSS comes from /usr/bin/time when installed. Results: README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${1:-1G}
FILE=${2:-/tmp/synscope-bench.pcap}
BIN=$(mktemp -d)/synscope
trap 'rm -rf "$(dirname "$BIN")"' EXIT

go build -o "$BIN" ./cmd/synscope
if [[ ! -s $FILE || ! -f $FILE.size || $(cat "$FILE.size") != "$SIZE" ]]; then
	echo "generating $SIZE capture at $FILE ..."
	go run ./bench/pcap/gen -o "$FILE" -size "$SIZE"
	echo "$SIZE" >"$FILE.size"
fi
PKTS=$(capinfos -c -M "$FILE" | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}')
echo "capture: $FILE, $(du -h "$FILE" | cut -f1), $PKTS packets"
cat "$FILE" >/dev/null # warm the page cache

PIN=()
command -v taskset >/dev/null && PIN=(taskset -c 0)

TIME=()
[[ -x /usr/bin/time ]] && TIME=(/usr/bin/time -f %M -o "$(dirname "$BIN")/rss")

measure() { # name, command...
	local name=$1
	shift
	local t0 t1 rss=""
	t0=$(date +%s.%N)
	"${TIME[@]}" "$@" >/dev/null 2>&1 || true # synscope exits 1 when handshakes failed
	t1=$(date +%s.%N)
	[[ ${#TIME[@]} -gt 0 ]] && rss=$(tail -1 "$(dirname "$BIN")/rss")
	awk -v n="$name" -v p="$PKTS" -v a="$t0" -v b="$t1" -v r="$rss" \
		'BEGIN { s = b - a; printf "%-40s %8.2f s  %12.0f packets/s", n, s, p / s; if (r != "") printf "  max RSS %d MB", r / 1024; printf "\n" }'
}

measure "synscope pcap (summary, 1 core)" env GOMAXPROCS=1 "${PIN[@]}" "$BIN" pcap "$FILE"
measure "synscope pcap --json (1 core)" env GOMAXPROCS=1 "${PIN[@]}" "$BIN" pcap --json "$FILE"
measure "tshark -q -z conv,tcp" "${PIN[@]}" tshark -n -r "$FILE" -q -z conv,tcp
if [[ ${TSHARK_TWOPASS:-0} == 1 ]]; then
	measure "tshark -2 tcp.analysis (two-pass)" "${PIN[@]}" tshark -n -2 -r "$FILE" -q -R 'tcp.analysis.flags' -z io,stat,0
fi
