package main

import (
	"fmt"
	"io"
	"os"

	"github.com/gearsgo/gears"
)

func (c *cli) runScript(args []string) int {
	fs := c.flags("run", "FILE|- [--unblocking] [--requirements REQ,...] [--addr HOST:PORT | --url redis://…] [--cluster]",
		`Sends a script with a run() (GB('PythonReader'/'ShardsIDReader')...run()) with RG.PYEXECUTE and
prints its result records on stdout, one a line, and its errors (with the Python traceback) on stderr.
"-" reads the script from stdin. Exit code 1 when the execution had errors. A script that registers
instead answers OK (use gears deploy for registrations).`,
		`echo "GB('ShardsIDReader').map(lambda x: execute('DBSIZE')).run()" | gears run -
gears run report.py --unblocking      # prints the execution id; then: gears results ID`)
	cf := addConnFlags(fs)
	unblocking := fs.Bool("unblocking", false, "do not wait: print the execution id (see gears results)")
	reqs := fs.String("requirements", "", "comma-separated pip requirements to install first")
	pos, code := c.parse(fs, args, 1, 1)
	if code >= 0 {
		return code
	}
	var src []byte
	var err error
	if pos[0] == "-" {
		src, err = io.ReadAll(c.stdin)
	} else {
		src, err = os.ReadFile(pos[0])
	}
	if err != nil {
		return c.fail("run", err)
	}
	client, rdb, ok := c.connect("run", cf)
	if !ok {
		return 2
	}
	defer rdb.Close()
	ctx, cancel := cf.ctx()
	defer cancel()
	reply, err := client.PyExecute(ctx, string(src), &gears.PyExecuteOptions{Unblocking: *unblocking, Requirements: splitList(*reqs)})
	if err != nil {
		return c.fail("run", err, string(src))
	}
	switch {
	case reply.ExecutionID != "":
		fmt.Fprintln(c.stdout, reply.ExecutionID)
	case reply.Result != nil:
		return c.writeResult(reply.Result, string(src))
	default:
		fmt.Fprintln(c.stdout, "OK")
	}
	return 0
}
