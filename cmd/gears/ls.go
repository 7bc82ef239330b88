package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gearsgo/gears"
)

// lsOutput is the shape of "gears ls --json" (stable: fields are only ever added).
type lsOutput struct {
	Registrations []lsRegistration `json:"registrations"`
	Sessions      []lsSession      `json:"sessions"`
}

// lsRegistration is one registration in "gears ls --json".
type lsRegistration struct {
	ID      string `json:"id"`
	Session string `json:"session"`
	Reader  string `json:"reader"`
	// Trigger is a CommandReader's trigger; "" for other readers.
	Trigger string `json:"trigger"`
	// Prefix is a KeysReader's key prefix or a StreamReader's stream prefix; "" for a CommandReader.
	Prefix      string `json:"prefix"`
	Mode        string `json:"mode"`
	Runs        int64  `json:"runs"`
	Successes   int64  `json:"successes"`
	Failures    int64  `json:"failures"`
	Aborted     int64  `json:"aborted"`
	LastError   string `json:"last_error"`
	Description string `json:"description"`
}

// lsSession is one session in "gears ls --json".
type lsSession struct {
	ID            string   `json:"id"`
	Description   string   `json:"description"`
	Registrations []string `json:"registrations"`
	Requirements  []string `json:"requirements"`
}

func (c *cli) ls(args []string) int {
	fs := c.flags("ls", "[--json] [--addr HOST:PORT | --url redis://…] [--cluster]",
		`Lists the registrations (RG.DUMPREGISTRATIONS) and the sessions (RG.PYDUMPSESSIONS): a table, or
with --json an object {"registrations": [...], "sessions": [...]} whose fields are
  registrations: id, session, reader, trigger (CommandReader), prefix (KeysReader/StreamReader), mode,
                 runs, successes, failures, aborted, last_error, description (the builder's desc)
  sessions:      id, description, registrations (ids), requirements
In the table, DESCRIPTION is the registration's desc, else its session's description.`,
		"gears ls\ngears ls --json | jq -r '.registrations[] | select(.failures > 0) | .id'")
	cf := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	client, rdb, ok := c.connect("ls", cf)
	if !ok {
		return 2
	}
	defer rdb.Close()
	ctx, cancel := cf.ctx()
	defer cancel()
	regs, err := client.DumpRegistrations(ctx)
	if err != nil {
		return c.fail("ls", err)
	}
	sessions, err := client.PyDumpSessions(ctx, nil)
	if errors.Is(err, gears.ErrUnknownCommand) {
		sessions, err = nil, nil // RedisGears 1.0: no sessions
	}
	if err != nil {
		return c.fail("ls", err)
	}
	out := lsOutput{Registrations: []lsRegistration{}, Sessions: []lsSession{}}
	sessionDesc := map[string]string{}
	for _, s := range sessions {
		sessionDesc[s.ID] = s.Description
		out.Sessions = append(out.Sessions, lsSession{ID: s.ID, Description: s.Description,
			Registrations: nonNil(s.RegistrationIDs), Requirements: nonNil(s.Requirements)})
	}
	for _, r := range regs {
		e := lsRegistration{ID: r.ID, Session: r.Session.SessionName, Reader: r.Reader, Mode: r.Data.Mode,
			Runs: r.Data.NumTriggered, Successes: r.Data.NumSuccess, Failures: r.Data.NumFailures,
			Aborted: r.Data.NumAborted, LastError: r.Data.LastError, Description: r.Desc}
		switch r.Reader {
		case "CommandReader":
			e.Trigger = r.Data.Args.Trigger
		case "KeysReader":
			e.Prefix = r.Data.Args.Regex
		case "StreamReader":
			e.Prefix = r.Data.Args.Stream
		}
		out.Registrations = append(out.Registrations, e)
	}
	if *asJSON {
		if err := writeJSON(c.stdout, out); err != nil {
			return c.fail("ls", err)
		}
		return 0
	}
	t := newTable(c.stdout, c.colorOut, "ID", "SESSION", "READER", "TRIGGER/PREFIX", "MODE", "RUNS", "FAILURES", "LAST ERROR", "DESCRIPTION")
	for _, r := range out.Registrations {
		desc := r.Description
		if desc == "" {
			desc = sessionDesc[r.Session]
		}
		t.row(r.ID, dash(r.Session), r.Reader, dash(r.Trigger+r.Prefix), r.Mode, strconv.FormatInt(r.Runs, 10),
			strconv.FormatInt(r.Failures, 10), dash(oneLine(lastErrorLine(r.LastError), 60)), dash(oneLine(desc, descWidth)))
	}
	t.flush()
	fmt.Fprintln(c.stdout)
	t = newTable(c.stdout, c.colorOut, "SESSION", "REGISTRATIONS", "REQUIREMENTS", "DESCRIPTION")
	for _, s := range out.Sessions {
		t.row(s.ID, strconv.Itoa(len(s.Registrations)), dash(strings.Join(s.Requirements, ",")), dash(oneLine(s.Description, descWidth)))
	}
	t.flush()
	return 0
}

// lastErrorLine is the readable part of a registration's last error: the exception of a traceback.
func lastErrorLine(text string) string {
	if text == "" {
		return ""
	}
	return strings.TrimPrefix(gears.ParseError(text).Error(), "gears: ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// descWidth is the widest description cell of the ls table (room for "gears deploy <file> gears:<hash>").
const descWidth = 90
