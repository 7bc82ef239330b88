#!/usr/bin/env bash
# bench-redis-benchmark.sh measures `gears serve` with redis-benchmark the way the RedisGears 1.2.13
# figures in ../shared/design.md were taken: plain GET k against RG.TRIGGER <t> k, where <t> runs a
# function doing one execute('GET', k), in the sync, async and async_local modes, with 1 and 50 clients.
# It builds cmd/gears, starts `gears serve` on a free loopback port, registers the three functions,
# prints a table with each trigger's ratio to GET in the same run, and stops the server.
#
# Usage: scripts/bench-redis-benchmark.sh [-n REQUESTS]      (default 20000)
# Needs redis-benchmark and redis-cli (Debian package redis-tools) and python3 on PATH.
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
trap cleanup EXIT INT TERM

echo "building cmd/gears ..." >&2
(cd "$root" && go build -o "$work/gears" ./cmd/gears)

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
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

# rps CLIENTS ARGS... prints the requests per second redis-benchmark measured for one command.
rps() {
	local clients="$1"
	shift
	# redis-benchmark warns that it cannot read CONFIG (gearstest has no CONFIG GET); drop only that line.
	redis-benchmark -h 127.0.0.1 -p "$port" -n "$requests" -c "$clients" --csv "$@" 2> >(grep -v "Could not fetch server CONFIG" >&2) |
		awk -F'"' 'NR == 2 { print $4 }'
}

printf '%-8s %-20s %12s %10s\n' clients command "req/s" "vs GET"
for clients in 1 50; do
	get="$(rps "$clients" GET "$key")"
	printf '%-8s %-20s %12.0f %10s\n' "$clients" "GET" "$get" "1.00"
	for mode in "${modes[@]}"; do
		trig="$(rps "$clients" RG.TRIGGER "bench_$mode" "$key")"
		ratio="$(python3 -c "print('%.2f' % ($trig / $get))")"
		printf '%-8s %-20s %12.0f %10s\n' "$clients" "TRIGGER $mode" "$trig" "$ratio"
	done
done
echo "(gears serve on 127.0.0.1:$port, $requests requests per row; RedisGears 1.2.13 on 2 cores: see ../shared/design.md)" >&2
