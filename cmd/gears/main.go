// Command gears is the gears CLI for operators of RedisGears 1.2 servers:
//
//	gears serve       run a RedisGears 1.2 compatible server (gearstest) until SIGINT or SIGTERM
//	gears deploy      make a server hold a folder of .py files, one session per file (--prune, --watch)
//	gears ls          list registrations and sessions (--json)
//	gears run         run a script with a run() (RG.PYEXECUTE) and print its records
//	gears trigger     call a CommandReader trigger (RG.TRIGGER)
//	gears unregister  remove registrations, by id or by session
//	gears executions  list executions (RG.DUMPEXECUTIONS)
//	gears results     print a finished execution's records (RG.GETRESULTS)
//	gears reqs        list the Python requirements (RG.PYDUMPREQS)
//
// "gears <command> --help" shows a command's flags and examples.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs its dial retries to stderr; the commands report errors themselves.
	redis.SetLogger(quietLogger{})
	c := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		colorOut: colorFor(os.Stdout), colorErr: colorFor(os.Stderr), progress: isTerminal(os.Stderr)}
	os.Exit(c.run(os.Args[1:]))
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// cli is one invocation: its streams and what the terminal allows.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// colorOut and colorErr: the stream is a terminal and NO_COLOR is not set.
	colorOut, colorErr bool
	// progress: stderr is a terminal, so transient progress lines may be drawn there.
	progress bool
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(c *cli, args []string) int
}

// commands lists the subcommands in the order "gears --help" shows them.
var commands = []command{
	{"serve", "run a RedisGears 1.2 compatible server (gearstest) until SIGINT/SIGTERM", (*cli).serve},
	{"deploy", "deploy .py files, one session per file: created/upgraded/unchanged (--dry-run, --prune, --watch)", (*cli).deploy},
	{"ls", "list registrations and sessions (--json for scripts)", (*cli).ls},
	{"run", "run a script with a run() (RG.PYEXECUTE) and print its records and errors", (*cli).runScript},
	{"trigger", "call a CommandReader trigger (RG.TRIGGER) and print its records", (*cli).trigger},
	{"unregister", "remove registrations, by id or all of a session's (--session)", (*cli).unregister},
	{"executions", "list the executions (RG.DUMPEXECUTIONS)", (*cli).executions},
	{"results", "print a finished execution's records and errors (RG.GETRESULTS)", (*cli).results},
	{"reqs", "list the Python requirements the server knows (RG.PYDUMPREQS)", (*cli).reqs},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gears <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Every command but serve connects with --addr HOST:PORT (default 127.0.0.1:6379) or --url redis://…,`)
	fmt.Fprintln(w, `and --cluster for a Redis Cluster. Run "gears <command> --help" for its flags and examples.`)
}

// run executes the CLI and returns the process exit code: 0 success, 1 failure, 2 bad usage.
func (c *cli) run(args []string) int {
	if len(args) == 0 {
		usage(c.stderr)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(c.stdout)
		return 0
	}
	for _, cmd := range commands {
		if cmd.name == args[0] {
			return cmd.run(c, args[1:])
		}
	}
	fmt.Fprintf(c.stderr, "gears: unknown command %q\n", args[0])
	usage(c.stderr)
	return 2
}
