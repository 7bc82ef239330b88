// Command audit_log demonstrates an event-driven gear function deployed from an embedded .py file:
// every write to a hash under user: is appended to the stream "audit" by Redis itself.
//
//	go run ./examples/audit_log                         # embedded gearstest server
//	go run ./examples/audit_log --addr 127.0.0.1:6379   # an existing RedisGears 1.2 server
//
// It deploys audit.py with gears.Deploy (created, then unchanged when deployed again — every instance
// of a service can do this at start-up), writes a few keys with plain Redis commands, and prints the
// audit stream.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/gearstest"
)

//go:embed audit.py
var auditPy string

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "audit_log:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("audit_log", flag.ContinueOnError)
	addr := fs.String("addr", "", "a RedisGears 1.2 server (default: an embedded gearstest server)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	where := *addr
	if where == "" {
		srv, err := gearstest.Start(gearstest.WithLogger(nil))
		if err != nil {
			return err
		}
		defer srv.Close()
		where = srv.Addr()
		fmt.Fprintf(out, "RedisGears server: %s (gearstest, embedded)\n", where)
	} else {
		fmt.Fprintf(out, "RedisGears server: %s\n", where)
	}
	rdb := redis.NewClient(&redis.Options{Addr: where})
	defer rdb.Close()

	session := gears.Session{ID: "audit_log", Source: auditPy, Description: "examples/audit_log"}
	for i := 0; i < 2; i++ {
		d, err := gears.Deploy(ctx, rdb, session)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "deploy audit.py: %s (%d registration)\n", d.Action, len(d.RegistrationIDs))
	}
	if err := rdb.Del(ctx, "audit").Err(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nwrites:")
	writes := [][]any{
		{"HSET", "user:1", "name", "Ada"},
		{"HSET", "user:2", "name", "Linus"},
		{"SET", "config:theme", "dark"}, // not under user: — not audited
		{"HDEL", "user:1", "name"},      // the hash is empty now: Redis deletes it (events hdel, then del)
		{"DEL", "user:2"},
	}
	for _, w := range writes {
		if err := rdb.Do(ctx, w...).Err(); err != nil {
			return err
		}
		fmt.Fprint(out, "  ", fmt.Sprintln(w...))
	}

	entries, err := rdb.XRange(ctx, "audit", "-", "+").Result()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nthe audit stream, written by the server (%d entries):\n", len(entries))
	for _, e := range entries {
		fmt.Fprintf(out, "  %-7s %s\n", e.Values["event"], e.Values["key"])
	}
	return nil
}
