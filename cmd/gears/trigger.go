package main

import (
	"fmt"
)

func (c *cli) trigger(args []string) int {
	fs := c.flags("trigger", "[--on-key KEY] [--addr HOST:PORT | --url redis://…] [--cluster] NAME [ARG...]",
		`Calls a CommandReader registration (RG.TRIGGER NAME ARG...; with --on-key, RG.TRIGGERONKEY NAME KEY
ARG..., which a cluster routes to KEY's shard) and prints its result records, one a line. Flags come
before NAME: everything after it is an argument, even when it starts with "-".`,
		"gears trigger cache_get https://example.com/logo.png\ngears trigger --addr 10.0.0.5:6379 visit home -1")
	cf := addConnFlags(fs)
	onKey := fs.String("on-key", "", "route with RG.TRIGGERONKEY to this key's shard")
	if code := c.parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(c.stderr, "gears trigger: expected NAME (see gears trigger --help)")
		return 2
	}
	name := fs.Arg(0)
	var targs []any
	for _, a := range fs.Args()[1:] {
		targs = append(targs, a)
	}
	client, rdb, ok := c.connect("trigger", cf)
	if !ok {
		return 2
	}
	defer rdb.Close()
	ctx, cancel := cf.ctx()
	defer cancel()
	var recs []any
	var err error
	if *onKey != "" {
		recs, err = client.TriggerOnKey(ctx, name, *onKey, targs...)
	} else {
		recs, err = client.Trigger(ctx, name, targs...)
	}
	if err != nil {
		return c.fail("trigger", err)
	}
	for _, r := range recs {
		fmt.Fprintln(c.stdout, formatRecord(r))
	}
	return 0
}
