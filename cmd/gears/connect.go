package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gearsgo/gears"
)

// flags returns a FlagSet for a subcommand whose --help prints the synopsis, the description, the
// flags and the examples to stdout; parse errors go to stderr.
func (c *cli) flags(name, synopsis, description, examples string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	// The flag package calls Usage on every parse error and on -h; parseFlags prints the usage itself,
	// to stdout for --help and to stderr after an error.
	fs.Usage = func() {}
	helps[fs] = func(w io.Writer) {
		fs.SetOutput(w)
		defer fs.SetOutput(c.stderr)
		fmt.Fprintf(w, "usage: gears %s %s\n\n%s\n\nFlags:\n", name, synopsis, description)
		fs.PrintDefaults()
		if examples != "" {
			fmt.Fprintln(w, "\nExamples:")
			for _, l := range strings.Split(examples, "\n") {
				fmt.Fprintln(w, "  "+l)
			}
		}
	}
	return fs
}

// helps holds each FlagSet's usage printer (one CLI invocation makes one or two FlagSets).
var helps = map[*flag.FlagSet]func(io.Writer){}

// parseFlags parses flags only (positional arguments stop it). code is -1 to go on, else the exit
// code: 0 after --help (usage on stdout), 2 after an error (the error and the usage on stderr).
func (c *cli) parseFlags(fs *flag.FlagSet, args []string) int {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		helps[fs](c.stdout)
		return 0
	case err != nil:
		helps[fs](c.stderr)
		return 2
	}
	return -1
}

// parse parses flags and positional arguments, which may be mixed ("gears deploy dir --prune"); after
// "--" everything is positional. It checks that there are at least min and, unless max < 0, at most
// max positional arguments. code is -1 to go on, else the exit code: 0 after --help, 2 for bad usage.
func (c *cli) parse(fs *flag.FlagSet, args []string, min, max int) (pos []string, code int) {
	for {
		if code := c.parseFlags(fs, args); code >= 0 {
			return nil, code
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		want := fmt.Sprintf("%d", min)
		switch {
		case max < 0:
			want = fmt.Sprintf("at least %d", min)
		case max != min:
			want = fmt.Sprintf("%d to %d", min, max)
		}
		fmt.Fprintf(c.stderr, "gears %s: expected %s argument(s), got %d (see gears %s --help)\n", fs.Name(), want, len(pos), fs.Name())
		return nil, 2
	}
	return pos, -1
}

// connFlags are the connection flags every command but serve has.
type connFlags struct {
	addr    string
	url     string
	cluster bool
	timeout time.Duration
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	cf := &connFlags{}
	fs.StringVar(&cf.addr, "addr", "", "server address HOST:PORT (default 127.0.0.1:6379)")
	fs.StringVar(&cf.url, "url", "", "server URL redis://[user:password@]HOST:PORT[/db] or rediss://… (instead of --addr)")
	fs.BoolVar(&cf.cluster, "cluster", false, "the server is a Redis Cluster node (RedisGears propagates registrations to every shard)")
	fs.DurationVar(&cf.timeout, "timeout", 5*time.Minute, "longest wait for one reply (a requirements install or a run() may take minutes)")
	return cf
}

// client connects as the flags say. go-redis' own retries are off: a command that timed out (an
// RG.PYEXECUTE still running on the server, say) must not be sent a second time behind our back; the
// commands that retry (deploy --watch) do it themselves.
func (cf *connFlags) client() (redis.UniversalClient, string, error) {
	if cf.addr != "" && cf.url != "" {
		return nil, "", errors.New("give --addr or --url, not both")
	}
	if cf.timeout <= 0 {
		return nil, "", fmt.Errorf("--timeout must be positive, got %v", cf.timeout)
	}
	tune := func(read, write *time.Duration, dial *time.Duration, retries *int) {
		*read, *write, *retries = cf.timeout, 30*time.Second, -1
		if *dial == 0 || *dial > 5*time.Second {
			*dial = 5 * time.Second
		}
	}
	if cf.cluster {
		var o *redis.ClusterOptions
		if cf.url != "" {
			var err error
			if o, err = redis.ParseClusterURL(cf.url); err != nil {
				return nil, "", fmt.Errorf("--url: %w", err)
			}
		} else {
			o = &redis.ClusterOptions{Addrs: []string{cf.addrOrDefault()}}
		}
		tune(&o.ReadTimeout, &o.WriteTimeout, &o.DialTimeout, &o.MaxRetries)
		o.ContextTimeoutEnabled = true
		return redis.NewClusterClient(o), strings.Join(o.Addrs, ","), nil
	}
	var o *redis.Options
	if cf.url != "" {
		var err error
		if o, err = redis.ParseURL(cf.url); err != nil {
			return nil, "", fmt.Errorf("--url: %w", err)
		}
	} else {
		o = &redis.Options{Addr: cf.addrOrDefault()}
	}
	tune(&o.ReadTimeout, &o.WriteTimeout, &o.DialTimeout, &o.MaxRetries)
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o), o.Addr, nil
}

func (cf *connFlags) addrOrDefault() string {
	if cf.addr != "" {
		return cf.addr
	}
	return "127.0.0.1:6379"
}

// connect builds the client, reporting a bad flag on stderr; ok false means exit 2.
func (c *cli) connect(name string, cf *connFlags) (*gears.Client, redis.UniversalClient, bool) {
	rdb, _, err := cf.client()
	if err != nil {
		fmt.Fprintf(c.stderr, "gears %s: %v\n", name, err)
		return nil, nil, false
	}
	return gears.NewClient(rdb), rdb, true
}

// ctx is the context of a one-shot command: it ends with the timeout.
func (cf *connFlags) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cf.timeout+time.Second)
}

// fail reports a command's error on stderr (with a Python traceback, when there is one, indented
// below, with the source lines of src when given: see writeDetails) and returns exit code 1.
func (c *cli) fail(name string, err error, src ...string) int {
	fmt.Fprintf(c.stderr, "%s %s\n", c.paintErr(red, "gears "+name+":"), errText(err))
	writeDetails(c.stderr, err, "    ", strings.Join(src, ""))
	return 1
}

// errText is an error's one-line text without the "gears: " prefix; a server error of the
// "Error type: <class 'X'>, Value: msg" form is shown as Python shows it, "X: msg".
func errText(err error) string {
	var ge *gears.Error
	if errors.As(err, &ge) && ge.Exception != "" && len(ge.Traceback) == 0 {
		return ge.Exception
	}
	return strings.TrimPrefix(err.Error(), "gears: ")
}
