#!/bin/sh
# test-under-load.sh: runs `go test -race ./...` (extra arguments are passed to go test) while one
# CPU-bound process per core (at least two) runs beside it, so that tests depending on the machine's
# speed show up. The burners are killed when the script exits, however it exits; the exit status is
# go test's.
#
#   scripts/test-under-load.sh                 # go test -race ./...
#   scripts/test-under-load.sh -count=1 -run TestX ./gearstest
set -u
cd "$(dirname "$0")/.." || exit 2

cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
[ "$cores" -ge 2 ] 2>/dev/null || cores=2

pids=""
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	for p in $pids; do
		wait "$p" 2>/dev/null
	done
	pids=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

i=0
while [ "$i" -lt "$cores" ]; do
	sh -c 'while :; do :; done' &
	pids="$pids $!"
	i=$((i + 1))
done
echo "test-under-load: $cores CPU-bound processes running (pids$pids)" >&2

if [ "$#" -eq 0 ]; then
	set -- ./...
fi
go test -race "$@"
status=$?
echo "test-under-load: go test exited with $status" >&2
exit "$status"
