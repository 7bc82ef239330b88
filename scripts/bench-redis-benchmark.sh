#!/usr/bin/env bash
# bench-redis-benchmark.sh measures `gears serve` with redis-benchmark the way the RedisGears 1.2.13
# figures in ../shared/design.md were taken: plain GET k against RG.TRIGGER <t> k, where <t> runs a
# function doing one execute('GET', k), in the sync, async and async_local modes, with 1 and 50 clients.
# It builds cmd/gears, starts `gears serve` on a free loopback port, registers the three functions,
# prints a table with each trigger's ratio to GET, and stops the server.
#
# When redis-server is on PATH it also measures a plain redis-server's GET in the same run, with the
# same clients, as a baseline of what this machine does right now: each row then shows its ratio to
# that GET next to the real RedisGears 1.2.13's ratio to its own GET (issue 11's table, taken on a
# 2-core machine like this one: a RedisGears server answers GET as fast as a plain redis-server), and
# "of RG" = the first ratio over the second (issue 11's goal: >= 0.5 in every row with 50 clients).
# Other load on the machine moves the absolute figures, even between runs seconds apart: each row's
# ratio is to a redis-server GET measured right before it, and the table shows medians over ROUNDS
# rounds (each measures every row once), with "of RG" per round after it.
#
# Usage: scripts/bench-redis-benchmark.sh [-n REQUESTS] [-r ROUNDS]      (defaults 20000, 3)
# Needs redis-benchmark and redis-cli (Debian package redis-tools) and python3 on PATH; redis-server
# (Debian package redis-server) for the baseline column.
set -euo pipefail

requests=20000
rounds=3
while getopts "n:r:" opt; do
	case "$opt" in
	n) requests="$OPTARG" ;;
	r) rounds="$OPTARG" ;;
	*)
		echo "usage: $0 [-n REQUESTS] [-r ROUNDS]" >&2
		exit 2
		;;
	esac
done

for tool in redis-benchmark redis-cli python3 go; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$0: $tool is not on PATH (redis-benchmark and redis-cli come with the redis-tools package)" >&2
		exit 1
	fi
done

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
server_pid=""
redis_pid=""

cleanup() {
	if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		# gears serve stops its worker on SIGTERM; give it a few seconds, then insist.
		for _ in $(seq 50); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap 'cleanup; stop_redis' EXIT INT TERM

stop_redis() {
	if [[ -n "$redis_pid" ]] && kill -0 "$redis_pid" 2>/dev/null; then
		kill -TERM "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	fi
}

echo "building cmd/gears ..." >&2
(cd "$root" && go build -o "$work/gears" ./cmd/gears)

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
port="$(free_port)"
"$work/gears" serve --addr "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
server_pid=$!

cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }

for _ in $(seq 100); do
	if [[ "$(cli PING 2>/dev/null)" == "PONG" ]]; then
		break
	fi
	if ! kill -0 "$server_pid" 2>/dev/null; then
		echo "$0: gears serve exited:" >&2
		cat "$work/serve.log" >&2
		exit 1
	fi
	sleep 0.1
done
if [[ "$(cli PING 2>/dev/null)" != "PONG" ]]; then
	echo "$0: gears serve did not answer PING on 127.0.0.1:$port" >&2
	exit 1
fi

key="bench:k"
cli SET "$key" bench-value >/dev/null
modes=(sync async async_local)
for mode in "${modes[@]}"; do
	reply="$(cli RG.PYEXECUTE "GB('CommandReader').map(lambda x: execute('GET', x[1])).register(trigger='bench_$mode', mode='$mode')" ID "bench_$mode" UPGRADE)"
	if [[ "$reply" != "OK" ]]; then
		echo "$0: registering bench_$mode failed: $reply" >&2
		exit 1
	fi
	check="$(cli RG.TRIGGER "bench_$mode" "$key")"
	if [[ "$check" != "bench-value" ]]; then
		echo "$0: RG.TRIGGER bench_$mode replied '$check'" >&2
		exit 1
	fi
done

# rps PORT CLIENTS ARGS... prints the requests per second redis-benchmark measured for one command.
rps() {
	local p="$1" clients="$2"
	shift 2
	# redis-benchmark warns that it cannot read CONFIG (gearstest has no CONFIG GET); drop only that line.
	redis-benchmark -h 127.0.0.1 -p "$p" -n "$requests" -c "$clients" --csv "$@" 2> >(grep -v "Could not fetch server CONFIG" >&2) |
		awk -F'"' 'NR == 2 { print $4 }'
}

# A plain redis-server beside it, for the same-run baseline (skipped when it is not installed).
rport=""
if command -v redis-server >/dev/null 2>&1; then
	rport="$(free_port)"
	redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
	redis_pid=$!
	for _ in $(seq 100); do
		[[ "$(redis-cli -h 127.0.0.1 -p "$rport" PING 2>/dev/null)" == "PONG" ]] && break
		sleep 0.1
	done
	if ! redis-cli -h 127.0.0.1 -p "$rport" SET "$key" bench-value >/dev/null 2>&1; then
		echo "$0: redis-server did not start; no baseline column" >&2
		rport=""
	fi
fi


# Each round measures every row once; a row's "vs redis GET" is its rate over a redis-server GET
# measured right before it (the machine's speed moves between runs seconds apart: redis-server's
# own GET has moved 78k-131k/s on the shared build VM), and the table shows per row the median over
# the rounds of both.
results="$work/results"
: >"$results"
for ((round = 1; round <= rounds; round++)); do
	for clients in 1 50; do
		for row in GET "${modes[@]}"; do
			rget="-"
			if [[ -n "$rport" ]]; then
				rget="$(rps "$rport" "$clients" GET "$key")"
			fi
			if [[ "$row" == GET ]]; then
				rate="$(rps "$port" "$clients" GET "$key")"
			else
				rate="$(rps "$port" "$clients" RG.TRIGGER "bench_$row" "$key")"
			fi
			echo "$round $clients $row $rate $rget" >>"$results"
		done
	done
	echo "round $round of $rounds done" >&2
done

python3 - "$results" <<'PY'
import statistics
import sys

# The real RedisGears 1.2.13 on 2 cores (issue 11): req/s per clients and row.
REAL = {1: {'GET': 15800, 'sync': 7200, 'async': 8900, 'async_local': 7800},
        50: {'GET': 87500, 'sync': 36200, 'async': 39400, 'async_local': 49000}}
rows = {}
for line in open(sys.argv[1]):
    _, clients, row, rate, rget = line.split()
    d = rows.setdefault((int(clients), row), {'rate': [], 'rget': [], 'vs': []})
    d['rate'].append(float(rate))
    if rget != '-':
        d['rget'].append(float(rget))
        d['vs'].append(float(rate) / float(rget))
med = statistics.median
print('%-8s %-20s %10s %8s %12s %13s %8s  %s' % ('clients', 'command', 'req/s', 'vs GET', 'vs redis GET',
                                               'RG vs its GET', 'of RG', 'of RG per round'))
for clients in (1, 50):
    get = med(rows[(clients, 'GET')]['rate'])
    d = rows[(clients, 'GET')]
    if d['rget']:
        print('%-8d %-20s %10.0f %8s %12s %13s %8s' % (clients, 'redis-server GET', med(d['rget']), '', '1.00', '1.00', ''))
    for row in ('GET', 'sync', 'async', 'async_local'):
        d = rows[(clients, row)]
        rg = REAL[clients][row] / REAL[clients]['GET']
        name = 'GET' if row == 'GET' else 'TRIGGER ' + row
        vs = of = per = ''
        if d['vs']:
            vs = '%.2f' % med(d['vs'])
            of = '%.2f' % (med(d['vs']) / rg)
            per = ' '.join('%.2f' % (v / rg) for v in d['vs'])
        print('%-8d %-20s %10.0f %8.2f %12s %13.2f %8s  %s' % (clients, name, med(d['rate']),
                                                            med(d['rate']) / get, vs, rg, of, per))
PY
echo "(gears serve on 127.0.0.1:$port, $requests requests per row, $rounds rounds, medians; RedisGears 1.2.13 figures: issue 11)" >&2
