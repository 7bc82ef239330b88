#!/usr/bin/env bash
# bench-redis-benchmark.sh measures `gears serve` with redis-benchmark the way the RedisGears 1.2.13
# figures in ../shared/design.md were taken: plain GET k against RG.TRIGGER <t> k, where <t> runs a
# function doing one execute('GET', k), in the sync, async and async_local modes, with 1 and 50 clients.
# It builds cmd/gears, starts `gears serve` on a free loopback port, registers the three functions,
# prints a table with each trigger's ratio to GET in the same run, and stops the server.
#
# When redis-server is on PATH it also measures a plain redis-server's GET in the same run, with the
# same clients, as a baseline of what this machine does right now: each row then shows its ratio to
# that GET next to the real RedisGears 1.2.13's ratio to its own GET (issue 11's table, taken on a
# 2-core machine like this one: a RedisGears server answers GET as fast as a plain redis-server), and
# "of RG" = the first ratio over the second (issue 11's goal: >= 0.5 in every row with 50 clients).
# Other load on the machine moves the absolute figures; the ratios within one run are what compare.
#
# Usage: scripts/bench-redis-benchmark.sh [-n REQUESTS]      (default 20000)
# Needs redis-benchmark and redis-cli (Debian package redis-tools) and python3 on PATH; redis-server
# (Debian package redis-server) for the baseline column.
set -euo pipefail

requests=20000
while getopts "n:" opt; do
	case "$opt" in
	n) requests="$OPTARG" ;;
	*)
		echo "usage: $0 [-n REQUESTS]" >&2
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

# The real RedisGears 1.2.13 on 2 cores (issue 11): req/s, per clients and row.
declare -A real=(
	[1 / GET]=15800 [1 / sync]=7200 [1 / async]=8900 [1 / async_local]=7800
	[50 / GET]=87500 [50 / sync]=36200 [50 / async]=39400 [50 / async_local]=49000
)

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

printf '%-8s %-20s %10s %8s %12s %12s %8s\n' clients command "req/s" "vs GET" "vs redis GET" "RG vs its GET" "of RG"
for clients in 1 50; do
	rget=""
	if [[ -n "$rport" ]]; then
		rget="$(rps "$rport" "$clients" GET "$key")"
		printf '%-8s %-20s %10.0f %8s %12s %12s %8s\n' "$clients" "redis-server GET" "$rget" "" "1.00" "1.00" ""
	fi
	get="$(rps "$port" "$clients" GET "$key")"
	row() {
		local name="$1" rate="$2" mode="$3" vsr="" rg of=""
		rg="$(ratio "${real[$clients / $mode]}" "${real[$clients / GET]}")"
		if [[ -n "$rget" ]]; then
			vsr="$(ratio "$rate" "$rget")"
			of="$(ratio "$vsr" "$rg")"
		fi
		printf '%-8s %-20s %10.0f %8s %12s %12s %8s\n' "$clients" "$name" "$rate" "$(ratio "$rate" "$get")" "$vsr" "$rg" "$of"
	}
	row GET "$get" GET
	for mode in "${modes[@]}"; do
		row "TRIGGER $mode" "$(rps "$port" "$clients" RG.TRIGGER "bench_$mode" "$key")" "$mode"
	done
done
echo "(gears serve on 127.0.0.1:$port, $requests requests per row; RedisGears 1.2.13 figures: issue 11)" >&2
