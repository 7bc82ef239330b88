package main

import (
	"strconv"
	"strings"
)

// requirementJSON is one requirement in "gears reqs --json".
type requirementJSON struct {
	Name       string   `json:"name"`
	Installed  bool     `json:"installed"`
	Downloaded bool     `json:"downloaded"`
	RefCount   int64    `json:"refcount"`
	OS         string   `json:"os"`
	Path       string   `json:"path"`
	Wheels     []string `json:"wheels"`
}

func (c *cli) reqs(args []string) int {
	fs := c.flags("reqs", "[--json] [--addr HOST:PORT | --url redis://…] [--cluster]",
		`Lists the Python requirements the server knows (RG.PYDUMPREQS): name, installed, downloaded, the
number of sessions using it, the OS its wheels were built for and their directory.`,
		"gears reqs\ngears reqs --json | jq -r '.[].name'")
	cf := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if _, code := c.parse(fs, args, 0, 0); code >= 0 {
		return code
	}
	client, rdb, ok := c.connect("reqs", cf)
	if !ok {
		return 2
	}
	defer rdb.Close()
	ctx, cancel := cf.ctx()
	defer cancel()
	list, err := client.PyDumpReqs(ctx)
	if err != nil {
		return c.fail("reqs", err)
	}
	if *asJSON {
		out := []requirementJSON{}
		for _, r := range list {
			out = append(out, requirementJSON{Name: r.Name, Installed: r.IsInstalled, Downloaded: r.IsDownloaded,
				RefCount: r.RefCount, OS: r.CompiledOs, Path: r.Path, Wheels: nonNil(r.Wheels)})
		}
		if err := writeJSON(c.stdout, out); err != nil {
			return c.fail("reqs", err)
		}
		return 0
	}
	t := newTable(c.stdout, c.colorOut, "NAME", "INSTALLED", "DOWNLOADED", "SESSIONS", "OS", "PATH")
	for _, r := range list {
		t.row(r.Name, strconv.FormatBool(r.IsInstalled), strconv.FormatBool(r.IsDownloaded),
			strconv.FormatInt(r.RefCount, 10), dash(r.CompiledOs), dash(r.Path))
	}
	t.flush()
	return 0
}

// splitList splits a comma-separated flag value.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
