#!/usr/bin/env bash
# Benchmark synscope pcap against tshark on a generated capture.
#
#   bench/pcap/run.sh [SIZE] [FILE]
#   REPEAT=5 bench/pcap/run.sh [SIZE] [FILE]   # synscope runs 5 times per mode (default 3)
#   FLOOD=1000000 bench/pcap/run.sh [SIZE] [FILE]   # also a SYN flood of that many SYNs
#
# SIZE defaults to 1G (the generator's -size syntax); FILE defaults to
# /tmp/synscope-bench.pcap and is reused when it already has that size.
# Both tools run single-core (GOMAXPROCS=1, taskset -c 0 when available)
# on a warm page cache; packets/s = packets in the file / wall seconds;
# max RSS comes from /usr/bin/time when installed. Results: README.md.
#
# A run that fails (synscope exits other than 0 or 1 — 1 only says some
# handshakes failed — a crash, or tshark exits non-zero) is reported as
# FAILED with its exit status and the end of its stderr, gets no
# packets/s figure, and makes the script exit 1.
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
# capinfos exits non-zero on a damaged file but still counts what it read.
PKTS=$(capinfos -c -M "$FILE" 2>/dev/null | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}' || true)
if [[ -z $PKTS || $PKTS == 0 ]]; then
	echo "capinfos cannot count the packets in $FILE" >&2
	exit 1
fi
echo "capture: $FILE, $(du -h "$FILE" | cut -f1), $PKTS packets"
cat "$FILE" >/dev/null # warm the page cache

PIN=()
command -v taskset >/dev/null && PIN=(taskset -c 0)

TIME=()
[[ -x /usr/bin/time ]] && TIME=(/usr/bin/time -f '%M %U %S' -o "$(dirname "$BIN")/rss")

FAILED=0
measure() { # name, allowed exit statuses (e.g. "0 1"), command...
	local name=$1 ok=$2
	shift 2
	local t0 t1 rss="" cpu="" rc=0 err
	LAST="" LASTCPU=""
	err=$(dirname "$BIN")/stderr
	t0=$(date +%s.%N)
	"${TIME[@]}" "$@" >/dev/null 2>"$err" || rc=$?
	t1=$(date +%s.%N)
	if [[ " $ok " != *" $rc "* ]]; then
		printf '%-40s FAILED (exit %d)\n' "$name" "$rc"
		tail -5 "$err" | sed 's/^/    /'
		FAILED=1
		return 0
	fi
	if [[ ${#TIME[@]} -gt 0 ]]; then
		read -r rss u s < <(tail -1 "$(dirname "$BIN")/rss")
		cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
	fi
	awk -v n="$name" -v p="$PKTS" -v a="$t0" -v b="$t1" -v r="$rss" -v c="$cpu" \
		'BEGIN { s = b - a; printf "%-40s %8.2f s  %12.0f packets/s", n, s, p / s; if (c != "") printf "  CPU %.2f s", c; if (r != "") printf "  max RSS %d MB", r / 1024; printf "\n" }'
	LAST=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	LASTCPU=$cpu
}

# median of the arguments (seconds)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# /usr/bin/time exits with the command's status; "${TIME[@]}" is empty
# without it. synscope: 0 all handshakes completed, 1 some failed.
# synscope runs REPEAT times in each mode (short runs feel a busy
# machine most); tshark once, between them; the ratio line compares the
# median --json run with tshark's, all from this one invocation.
REPEAT=${REPEAT:-3}
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
SUM=() JSON=() JSONCPU=()
for ((i = 1; i <= REPEAT; i++)); do
	measure "synscope pcap (summary, 1 core) #$i" "0 1" env GOMAXPROCS=1 "${PIN[@]}" "$BIN" pcap "$FILE"
	SUM+=("${LAST:-}")
	measure "synscope pcap --json (1 core) #$i" "0 1" env GOMAXPROCS=1 "${PIN[@]}" "$BIN" pcap --json "$FILE"
	JSON+=("${LAST:-}")
	JSONCPU+=("${LASTCPU:-}")
	if ((i == (REPEAT + 1) / 2)); then
		measure "tshark -q -z conv,tcp" "0" "${PIN[@]}" tshark -n -r "$FILE" -q -z conv,tcp
		TSHARK=${LAST:-} TSHARKCPU=${LASTCPU:-}
	fi
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $FAILED == 0 ]]; then
	awk -v p="$PKTS" -v s="$(median "${SUM[@]}")" -v j="$(median "${JSON[@]}")" -v t="$TSHARK" 'BEGIN {
		printf "median of %d: summary %.2f s (%.2f M packets/s), --json %.2f s (%.2f M packets/s)\n", '"$REPEAT"', s, p / s / 1e6, j, p / j / 1e6
		printf "synscope pcap --json is %.1fx tshark on this file in wall time (%.2f s vs %.2f s)\n", t / j, j, t
	}'
	if [[ -n ${TSHARKCPU:-} && -n ${JSONCPU[0]:-} ]]; then
		# CPU time (user+system) moves less than wall time when other
		# work shares the core.
		awk -v j="$(median "${JSONCPU[@]}")" -v t="$TSHARKCPU" -v p="$PKTS" 'BEGIN {
			printf "in CPU time: --json %.2f s (%.2f M packets per CPU second) vs tshark %.2f s: %.1fx\n", j, p / j / 1e6, t, t / j
		}'
	fi
fi
if [[ ${TSHARK_TWOPASS:-0} == 1 ]]; then
	measure "tshark -2 tcp.analysis (two-pass)" "0" "${PIN[@]}" tshark -n -2 -r "$FILE" -q -R 'tcp.analysis.flags' -z io,stat,0
fi
if [[ ${FLOOD:-0} -gt 0 ]]; then
	FL=${FILE%.pcap}-flood$FLOOD.pcap
	[[ -s $FL ]] || go run ./bench/pcap/gen -o "$FL" -flood "$FLOOD"
	PKTS=$((2 * FLOOD))
	echo "SYN flood: $FL, $(du -h "$FL" | cut -f1), $PKTS packets (default cap $(grep -o 'DefaultMaxAttempts = [0-9_]*' internal/pcap/analyze.go | cut -d' ' -f3) attempts)"
	measure "synscope pcap flood (summary, 1 core)" "0 1" env GOMAXPROCS=1 "${PIN[@]}" "$BIN" pcap "$FL"
	measure "synscope pcap flood --json (1 core)" "0 1" env GOMAXPROCS=1 "${PIN[@]}" "$BIN" pcap --json "$FL"
fi
if [[ $FAILED != 0 ]]; then
	echo "some runs FAILED: no figure above is valid for them" >&2
	exit 1
fi
