package main

func (c *cli) results(args []string) int {
	fs := c.flags("results", "ID [--block] [--addr HOST:PORT | --url redis://…] [--cluster]",
		`Prints a finished execution's result records (RG.GETRESULTS), one a line, and its errors with their
Python tracebacks on stderr; exit code 1 when it had errors. With --block, waits for a running one
(RG.GETRESULTSBLOCKING).`,
		"id=$(gears run --unblocking report.py) && gears results --block $id")
	cf := addConnFlags(fs)
	block := fs.Bool("block", false, "wait until the execution has finished")
	pos, code := c.parse(fs, args, 1, 1)
	if code >= 0 {
		return code
	}
	client, rdb, ok := c.connect("results", cf)
	if !ok {
		return 2
	}
	defer rdb.Close()
	ctx, cancel := cf.ctx()
	defer cancel()
	get := client.GetResults
	if *block {
		get = client.GetResultsBlocking
	}
	res, err := get(ctx, pos[0])
	if err != nil {
		return c.fail("results", err)
	}
	return c.writeResult(res, "")
}
