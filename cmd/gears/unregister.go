package main

import (
	"fmt"
	"strings"

	"github.com/gearsgo/gears"
)

func (c *cli) unregister(args []string) int {
	fs := c.flags("unregister", "ID... | --session S  [--abort-pending] [--addr HOST:PORT | --url redis://…] [--cluster]",
		`Removes registrations (RG.UNREGISTER): the ones named by id (see gears ls), or with --session every
registration of that session, under the session's registration lock (gears.Undeploy), so that it never
interleaves with a deploy of that session.`,
		"gears unregister 0000000000000000000000000000000000000000-3\ngears unregister --session shop-billing__audit")
	cf := addConnFlags(fs)
	session := fs.String("session", "", "unregister every registration of this session")
	abort := fs.Bool("abort-pending", false, "also abort the registrations' pending executions (ids only)")
	ids, code := c.parse(fs, args, 0, -1)
	if code >= 0 {
		return code
	}
	if (*session == "") == (len(ids) == 0) {
		fmt.Fprintln(c.stderr, "gears unregister: give registration ids or --session, one of the two (see gears unregister --help)")
		return 2
	}
	if *session != "" && *abort {
		fmt.Fprintln(c.stderr, "gears unregister: --abort-pending goes with ids, not --session")
		return 2
	}
	client, rdb, ok := c.connect("unregister", cf)
	if !ok {
		return 2
	}
	defer rdb.Close()
	ctx, cancel := cf.ctx()
	defer cancel()
	if *session != "" {
		done, err := gears.Undeploy(ctx, rdb, *session)
		for _, id := range done {
			fmt.Fprintf(c.stdout, "unregistered %s (session %s)\n", id, *session)
		}
		if err != nil {
			return c.fail("unregister", err)
		}
		if len(done) == 0 {
			fmt.Fprintf(c.stderr, "gears unregister: session %s has no registrations\n", *session)
			return 1
		}
		return 0
	}
	code = 0
	for _, id := range ids {
		if err := client.Unregister(ctx, id, *abort); err != nil {
			code = c.fail("unregister", fmt.Errorf("%s: %s", id, strings.TrimPrefix(err.Error(), "gears: ")))
			continue
		}
		fmt.Fprintf(c.stdout, "unregistered %s\n", id)
	}
	return code
}
