// Command gears is the gears CLI. Today it has one subcommand:
//
//	gears serve --addr 127.0.0.1:6379 [--redis redis://HOST:PORT] [--python python3]
//
// which runs a RedisGears 1.2 compatible server (gearstest) until SIGINT or SIGTERM.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gearsgo/gears/gearstest"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gears serve [--addr 127.0.0.1:6379] [--redis redis://HOST:PORT] [--python PATH] [--no-py37-check]")
}

// run executes the CLI and returns the process exit code.
func run(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "help", "-h", "--help":
		usage(os.Stdout)
		return 0
	}
	fmt.Fprintf(stderr, "gears: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:6379", "address to listen on")
	redisURL := fs.String("redis", "", "external Redis for the data (redis://HOST:PORT); default: in-process")
	python := fs.String("python", "", "Python interpreter for the worker (default $GEARS_PYTHON, else python3)")
	no37 := fs.Bool("no-py37-check", false, "accept scripts that are not valid Python 3.7 syntax")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	opts := []gearstest.Option{gearstest.WithAddr(*addr), gearstest.WithLogger(stderr)}
	if *redisURL != "" {
		opts = append(opts, gearstest.WithRedis(*redisURL))
	}
	if *python != "" {
		opts = append(opts, gearstest.WithPython(*python))
	}
	if *no37 {
		opts = append(opts, gearstest.WithoutPython37Check())
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	srv, err := gearstest.Start(opts...)
	if err != nil {
		fmt.Fprintf(stderr, "gears serve: %v\n", err)
		return 1
	}
	sig := <-sigs
	fmt.Fprintf(stderr, "gears serve: received %v, shutting down\n", sig)
	// Each hazard (an action that crashes or hangs a real RedisGears 1.2.13) was logged when it
	// happened and is counted in INFO gearstest; the total once more at the end.
	if n := len(srv.Hazards()); n > 0 {
		fmt.Fprintf(stderr, "gears serve: %d hazard(s) were refused; each would crash or hang a real RedisGears 1.2.13 (see the log)\n", n)
	}
	if err := srv.Close(); err != nil {
		fmt.Fprintf(stderr, "gears serve: %v\n", err)
		return 1
	}
	return 0
}
