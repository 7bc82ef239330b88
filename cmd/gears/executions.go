package main

import (
	"strconv"
)

// executionJSON is one execution in "gears executions --json".
type executionJSON struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Registered bool   `json:"registered"`
}

func (c *cli) executions(args []string) int {
	fs := c.flags("executions", "[--json] [--addr HOST:PORT | --url redis://…] [--cluster]",
		`Lists the executions the server keeps (RG.DUMPEXECUTIONS): id, status (created, running, done,
aborted, …) and whether a registration started it. --json prints [{"id", "status", "registered"}].`,
		"gears executions\ngears results $(gears executions --json | jq -r '.[-1].id')")
	cf := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	client, rdb, ok := c.connect("executions", cf)
	if !ok {
		return 2
	}
	defer rdb.Close()
	ctx, cancel := cf.ctx()
	defer cancel()
	list, err := client.DumpExecutions(ctx)
	if err != nil {
		return c.fail("executions", err)
	}
	if *asJSON {
		out := []executionJSON{}
		for _, e := range list {
			out = append(out, executionJSON{ID: e.ExecutionID, Status: e.Status, Registered: e.Registered})
		}
		if err := writeJSON(c.stdout, out); err != nil {
			return c.fail("executions", err)
		}
		return 0
	}
	t := newTable(c.stdout, c.colorOut, "EXECUTION", "STATUS", "REGISTERED")
	for _, e := range list {
		t.row(e.ExecutionID, e.Status, strconv.FormatBool(e.Registered))
	}
	t.flush()
	return 0
}
