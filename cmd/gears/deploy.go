package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gearsgo/gears"
)

// pollInterval is how often --watch reads the files (their whole contents: simple, and cheap for
// folders of scripts). A change is deployed once two polls in a row have seen the same contents, so
// that an editor's several writes of one save are deployed once (a debounce of one poll).
const pollInterval = 250 * time.Millisecond

// maxBackoff bounds the wait between attempts to reach a server that went away.
const maxBackoff = 5 * time.Second

func (c *cli) deploy(args []string) int {
	fs := c.flags("deploy", "PATH... [--addr HOST:PORT | --url redis://…] [--cluster] [--prefix P] [--requirements FILE] [--dry-run] [--prune] [--watch]",
		`Makes the server hold every .py file under the PATHs (files or folders, walked recursively) as one
session each, with gears.Deploy: created when new, upgraded atomically when the file changed,
unchanged otherwise; at most one RG.PYEXECUTE of a session is in flight across all deployers.

Session id: <prefix><path relative to PATH, without .py>, where "/" becomes "__" and any other
character outside [A-Za-z0-9_-] becomes "-" (billing/audit.py -> billing__audit). Two files with one
id are an error before anything is sent.

Requirements of a file, the first that applies: a header comment at the top of the file,
    # gears: requirements=requests==2.31.0,six
a requirements.txt in the file's folder, the --requirements FILE.

Output, one line per file: created / upgraded / unchanged, or failed with the server's error and the
Python traceback (on stderr). Exit code 1 when any file failed.`,
		`gears deploy gears/ --addr 127.0.0.1:6379
gears deploy gears/ --prefix shop- --prune        # also unregister shop-* sessions whose file is gone
gears deploy gears/ --prefix shop- --dry-run      # say what would happen, send nothing
gears deploy gears/ --prefix shop- --prune --watch # keep the server in step with the folder`)
	cf := addConnFlags(fs)
	prefix := fs.String("prefix", "", "session id prefix ([A-Za-z0-9_-]); --prune touches only sessions with it")
	reqFile := fs.String("requirements", "", "requirements file for the scripts that have neither a header nor a requirements.txt beside them")
	dry := fs.Bool("dry-run", false, "say what would be done; send no RG.PYEXECUTE or RG.UNREGISTER")
	prune := fs.Bool("prune", false, "unregister the sessions with --prefix whose file is gone (needs --prefix)")
	watch := fs.Bool("watch", false, fmt.Sprintf("keep deploying changes (polls the files every %v), until SIGINT/SIGTERM; survives server restarts", pollInterval))
	paths, code := c.parse(fs, args, 1, -1)
	if code >= 0 {
		return code
	}
	switch {
	case !validPrefix.MatchString(*prefix):
		fmt.Fprintf(c.stderr, "gears deploy: --prefix %q may only hold letters, digits, '-' and '_'\n", *prefix)
		return 2
	case *prune && *prefix == "":
		fmt.Fprintln(c.stderr, "gears deploy: --prune needs --prefix: without one it would unregister every session on the server that is not in PATH")
		return 2
	case *dry && *watch:
		fmt.Fprintln(c.stderr, "gears deploy: --dry-run and --watch do not go together")
		return 2
	}
	_, rdb, ok := c.connect("deploy", cf)
	if !ok {
		return 2
	}
	defer rdb.Close()
	d := &deployer{cli: c, rdb: rdb, paths: paths, prefix: *prefix, reqFile: *reqFile, dry: *dry, prune: *prune,
		timeout: cf.timeout, state: map[string]*deployedFile{}}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *watch {
		return d.watch(ctx)
	}
	return d.once(ctx)
}

// deployer runs gears deploy.
type deployer struct {
	cli     *cli
	rdb     redis.UniversalClient
	paths   []string
	prefix  string
	reqFile string
	dry     bool
	prune   bool
	timeout time.Duration

	// state is what this process last deployed per session id (--watch).
	state map[string]*deployedFile
}

// deployedFile is what the server was last seen to hold for a file.
type deployedFile struct {
	fp     string   // the file's fingerprint when deployed
	ids    []string // the registration ids Deploy reported
	failed bool     // the server refused it: not tried again until the file changes
}

// counts tallies one pass.
type counts struct {
	created, upgraded, unchanged, failed, pruned int
}

// errUnavailable marks a pass cut short because the server could not be reached.
type errUnavailable struct{ err error }

func (e *errUnavailable) Error() string { return e.err.Error() }

// once is the one-shot deploy: every file, then --prune; exit code 1 when anything failed.
func (d *deployer) once(ctx context.Context) int {
	c := d.cli
	snap, err := scan(d.paths, d.prefix, d.reqFile)
	if err != nil {
		return c.fail("deploy", err)
	}
	if len(snap.files) == 0 && !d.prune {
		fmt.Fprintln(c.stderr, "gears deploy: no .py files under", strings.Join(d.paths, " "))
		return 1
	}
	sessions, err := d.sessions(ctx)
	if err != nil {
		return c.fail("deploy", fmt.Errorf("cannot reach the server: %w", err))
	}
	n, err := d.pass(ctx, snap, sessions, true)
	if err != nil {
		c.fail("deploy", err)
		n.failed++
	}
	verb := func(s string) string {
		if d.dry {
			return "would be " + s
		}
		return s
	}
	parts := []string{fmt.Sprintf("%d %s", n.created, verb("created")), fmt.Sprintf("%d %s", n.upgraded, verb("upgraded")),
		fmt.Sprintf("%d unchanged", n.unchanged), fmt.Sprintf("%d failed", n.failed)}
	if d.prune {
		parts = append(parts, fmt.Sprintf("%d %s", n.pruned, verb("pruned")))
	}
	fmt.Fprintf(c.stdout, "%d file(s): %s\n", len(snap.files), strings.Join(parts, ", "))
	if n.failed > 0 {
		return 1
	}
	return 0
}

// sessions lists the server's live sessions by id (one RG.PYDUMPSESSIONS).
func (d *deployer) sessions(ctx context.Context) (map[string]gears.SessionInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := gears.NewClient(d.rdb).PyDumpSessions(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]gears.SessionInfo, len(list))
	for _, s := range list {
		out[s.ID] = s
	}
	return out, nil
}

// pass deploys what needs it and prunes. all: deploy every file (one-shot); otherwise only files that
// changed since this process deployed them, or whose registrations the server no longer holds as
// deployed (a restarted server has lost them). It stops at the first sign that the server is gone
// (errUnavailable); files not reached are tried on the next pass.
func (d *deployer) pass(ctx context.Context, snap *snapshot, sessions map[string]gears.SessionInfo, all bool) (counts, error) {
	var n counts
	var todo []*scriptFile
	for _, f := range snap.files {
		st := d.state[f.session]
		switch {
		case all, st == nil, st.fp != f.fp:
		case st.failed:
			continue
		case !slices.Equal(st.ids, sessions[f.session].RegistrationIDs):
		default:
			continue
		}
		todo = append(todo, f)
	}
	for i, f := range todo {
		if ctx.Err() != nil {
			return n, nil
		}
		d.cli.showProgress(fmt.Sprintf("[%d/%d] %s", i+1, len(todo), f.rel))
		if err := d.one(ctx, f, &n); err != nil {
			return n, err
		}
	}
	if d.prune {
		if err := d.pruneGone(ctx, snap, sessions, &n); err != nil {
			return n, err
		}
	}
	return n, nil
}

// one deploys (or plans) one file and prints its line.
func (d *deployer) one(ctx context.Context, f *scriptFile, n *counts) error {
	c := d.cli
	if f.err != nil {
		n.failed++
		d.state[f.session] = &deployedFile{fp: f.fp, failed: true}
		c.fileFailed(f, f.err)
		return nil
	}
	s := gears.Session{ID: f.session, Source: f.source, Description: "gears deploy " + f.rel, Requirements: f.reqs}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.timeout)
	defer cancel()
	var (
		act  gears.Action
		ids  []string
		err  error
		verb string
	)
	if d.dry {
		act, err = gears.Plan(dctx, d.rdb, s)
		verb = map[gears.Action]string{gears.Created: "would create", gears.Upgraded: "would upgrade", gears.Unchanged: "unchanged"}[act]
	} else {
		var dep gears.Deployment
		dep, err = gears.Deploy(dctx, d.rdb, s)
		act, ids, verb = dep.Action, dep.RegistrationIDs, dep.Action.String()
	}
	if err != nil {
		var ge *gears.Error
		if !errors.As(err, &ge) && !errors.Is(err, gears.ErrConflict) {
			// Not the server's verdict on the script: the connection failed.
			return &errUnavailable{err}
		}
		n.failed++
		d.state[f.session] = &deployedFile{fp: f.fp, failed: true}
		c.fileFailed(f, err)
		return nil
	}
	switch act {
	case gears.Created:
		n.created++
	case gears.Upgraded:
		n.upgraded++
	default:
		n.unchanged++
	}
	if !d.dry {
		d.state[f.session] = &deployedFile{fp: f.fp, ids: ids}
	}
	line := fmt.Sprintf("%s %s (%s)", c.paintOut(actionColor(act), fmt.Sprintf("%-*s", d.actionWidth(), verb)), f.session, f.rel)
	if !d.dry && act != gears.Unchanged {
		line += " " + plural(len(ids), "registration")
	}
	c.clearProgress()
	fmt.Fprintln(c.stdout, line)
	return nil
}

func (d *deployer) actionWidth() int {
	if d.dry {
		return len("would upgrade")
	}
	return len("unchanged")
}

func actionColor(a gears.Action) string {
	switch a {
	case gears.Created:
		return green
	case gears.Upgraded:
		return cyan
	}
	return dim
}

// fileFailed prints a file's failure on stderr: the error, then the Python traceback indented.
func (c *cli) fileFailed(f *scriptFile, err error) {
	c.clearProgress()
	msg := strings.TrimPrefix(errText(err), "deploying session "+f.session+": ")
	fmt.Fprintf(c.stderr, "%s %s (%s): %s\n", c.paintErr(red, "failed   "), f.session, f.rel, msg)
	writeDetails(c.stderr, err, "    ", f.source)
}

// pruneGone unregisters the sessions with the prefix that no file of the snapshot is deployed as.
func (d *deployer) pruneGone(ctx context.Context, snap *snapshot, sessions map[string]gears.SessionInfo, n *counts) error {
	c := d.cli
	keep := map[string]bool{}
	for _, f := range snap.files {
		keep[f.session] = true
	}
	var gone []string
	for id := range sessions {
		if strings.HasPrefix(id, d.prefix) && !keep[id] {
			gone = append(gone, id)
		}
	}
	for id := range d.state {
		if !keep[id] {
			delete(d.state, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		if ctx.Err() != nil {
			return nil
		}
		if d.dry {
			n.pruned++
			fmt.Fprintf(c.stdout, "%s %s (file gone): %s\n", c.paintOut(yellow, fmt.Sprintf("%-*s", d.actionWidth(), "would prune")),
				id, plural(len(sessions[id].RegistrationIDs), "registration"))
			continue
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.timeout)
		ids, err := gears.Undeploy(dctx, d.rdb, id)
		cancel()
		if err != nil {
			var ge *gears.Error
			if !errors.As(err, &ge) {
				return &errUnavailable{err}
			}
			n.failed++
			fmt.Fprintf(c.stderr, "%s %s (file gone): %s\n", c.paintErr(red, "failed   "), id, strings.TrimPrefix(err.Error(), "gears: "))
			continue
		}
		n.pruned++
		fmt.Fprintf(c.stdout, "%s %s (file gone): %s unregistered\n", c.paintOut(yellow, fmt.Sprintf("%-*s", d.actionWidth(), "pruned")),
			id, plural(len(ids), "registration"))
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// showProgress draws a transient line on a terminal's stderr.
func (c *cli) showProgress(s string) {
	if c.progress {
		fmt.Fprintf(c.stderr, "\r\x1b[K%s", s)
	}
}

// clearProgress removes the transient line.
func (c *cli) clearProgress() {
	if c.progress {
		fmt.Fprint(c.stderr, "\r\x1b[K")
	}
}

// watch deploys, then polls the files and the server until ctx ends (SIGINT/SIGTERM): a change is
// deployed once it has been seen by two polls in a row; when the server cannot be reached, it retries
// with a backoff from pollInterval to maxBackoff, and on its return redeploys every file whose
// registrations the server no longer holds (all of them after a restart). It exits 0.
func (d *deployer) watch(ctx context.Context) int {
	c := d.cli
	var (
		seen      string // fingerprint of the last snapshot seen
		scanErr   string // the last scan error printed
		down      bool   // the server was unreachable at the last attempt
		backoff   = pollInterval
		nextTry   time.Time
		first     = true
		announced bool
	)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		snap, err := scan(d.paths, d.prefix, d.reqFile)
		switch {
		case err != nil:
			if err.Error() != scanErr {
				scanErr = err.Error()
				c.fail("deploy", err)
			}
		case snap.fp != seen && !first:
			// Changed since the last poll: wait for one poll without change.
			seen, scanErr = snap.fp, ""
		case down && time.Now().Before(nextTry):
		default:
			seen, scanErr, first = snap.fp, "", false
			err := d.sync(ctx, snap, func() {
				if down {
					fmt.Fprintf(c.stderr, "%s server is back\n", c.paintErr(green, "connected"))
				}
				down, backoff = false, pollInterval
			})
			if err != nil {
				if !down {
					fmt.Fprintf(c.stderr, "%s server unavailable (%v); retrying\n", c.paintErr(yellow, "waiting  "), err)
				}
				down = true
				nextTry = time.Now().Add(backoff)
				backoff = min(backoff*2, maxBackoff)
				break
			}
			if !announced {
				announced = true
				fmt.Fprintf(c.stderr, "watching %s (every %v; Ctrl-C to stop)\n", strings.Join(d.paths, " "), pollInterval)
			}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(c.stderr, "gears deploy: stopped")
			return 0
		case <-t.C:
		}
	}
}

// sync reads the server's sessions, calls reached, and deploys what differs. A failed connection
// returns an error.
func (d *deployer) sync(ctx context.Context, snap *snapshot, reached func()) error {
	sessions, err := d.sessions(ctx)
	if err != nil {
		return err
	}
	reached()
	_, err = d.pass(ctx, snap, sessions, false)
	var u *errUnavailable
	if errors.As(err, &u) {
		return u.err
	}
	if err != nil {
		d.cli.fail("deploy", err)
	}
	return nil
}
