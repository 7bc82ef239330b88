package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

func TestRunTriggerResultsExecutions(t *testing.T) {
	s := newServer(t)
	addr := []string{"--addr", s.Addr()}

	// run from stdin: the records, one a line.
	r := runCLI(t, "GB('PythonReader').run(lambda: iter([1, 2, 3]))\n", append([]string{"run", "-"}, addr...)...)
	assert.Equal(t, result{stdout: "1\n2\n3\n"}, r)

	// run from a file, with an error: the records, then the error with its traceback and source line.
	script := "GB('PythonReader').map(lambda x: 10 // x).run(lambda: iter([1, 2, 0]))\n"
	file := filepath.Join(t.TempDir(), "div.py")
	writeFile(t, file, script)
	r = runCLI(t, "", append([]string{"run", file}, addr...)...)
	assert.Equal(t, result{code: 1, stdout: "10\n5\n", stderr: "error: ZeroDivisionError: integer division or modulo by zero (at <string> line 1, in <lambda>)\n" +
		"    Traceback (most recent call last):\n" +
		"      File \"<string>\", line 1, in <lambda>\n" +
		"        GB('PythonReader').map(lambda x: 10 // x).run(lambda: iter([1, 2, 0]))\n" +
		"    ZeroDivisionError: integer division or modulo by zero\n"}, r)

	// A script that does not compile.
	r = runCLI(t, "GB(\n", append([]string{"run", "-"}, addr...)...)
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "", r.stdout)
	assert.Equal(t, "gears run: SyntaxError: unexpected EOF while parsing (<string>, line 1)\n    line 1: GB(\n", r.stderr)

	// run --unblocking prints the execution id; results --block prints its records; executions lists it.
	r = runCLI(t, "GB('PythonReader').run(lambda: iter(['x', 'y']))\n", append([]string{"run", "--unblocking", "-"}, addr...)...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `^[0-9a-f]{40}-\d+\n$`, r.stdout)
	id := strings.TrimSpace(r.stdout)
	r = runCLI(t, "", append([]string{"results", "--block", id}, addr...)...)
	assert.Equal(t, result{stdout: "x\ny\n"}, r)
	r = runCLI(t, "", append([]string{"results", id}, addr...)...)
	assert.Equal(t, result{stdout: "x\ny\n"}, r)
	r = runCLI(t, "", append([]string{"results", "0000000000000000000000000000000000000000-999"}, addr...)...)
	assert.Equal(t, result{code: 1, stderr: "gears results: execution plan does not exist\n"}, r)

	list, err := s.c.DumpExecutions(context.Background())
	require.NoError(t, err)
	var want strings.Builder
	idw := len("EXECUTION")
	for _, e := range list {
		idw = max(idw, len(e.ExecutionID))
	}
	fmt.Fprintf(&want, "%-*s  STATUS  REGISTERED\n", idw, "EXECUTION")
	for _, e := range list {
		fmt.Fprintf(&want, "%-*s  %-6s  %v\n", idw, e.ExecutionID, e.Status, e.Registered)
	}
	require.Regexp(t, regexp.QuoteMeta(id)+` +done    false\n`, want.String())
	r = runCLI(t, "", append([]string{"executions"}, addr...)...)
	assert.Equal(t, result{stdout: want.String()}, r)
	r = runCLI(t, "", append([]string{"executions", "--json"}, addr...)...)
	require.Equal(t, 0, r.code)
	var execs []executionJSON
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &execs))
	assert.Contains(t, execs, executionJSON{ID: id, Status: "done"})

	// trigger: arguments after NAME are the function's, even when they look like flags.
	_, err = gears.Deploy(context.Background(), s.rdb, gears.Session{ID: "greet",
		Source: "GB('CommandReader').map(lambda x: 'hello ' + ' '.join(x[1:])).register(trigger='greet', mode='sync')\n"})
	require.NoError(t, err)
	r = runCLI(t, "", append(append([]string{"trigger"}, addr...), "greet", "big", "--world")...)
	assert.Equal(t, result{stdout: "hello big --world\n"}, r)
	r = runCLI(t, "", append(append([]string{"trigger"}, addr...), "nope")...)
	assert.Equal(t, result{code: 1, stderr: "gears trigger: ERR subcommand not found\n"}, r)
}

func TestUnregisterLsReqs(t *testing.T) {
	s := newServer(t)
	addr := []string{"--addr", s.Addr()}
	dir := t.TempDir()
	// Requirements: a header, a requirements.txt beside the file, --requirements for the rest.
	// gearstest uses a requirement the interpreter already has as it is (attrs, packaging: pip's own).
	writeFile(t, filepath.Join(dir, "one.py"), "# Orders.\n# gears: requirements=attrs\n"+reply("t1", "one"))
	writeFile(t, filepath.Join(dir, "two.py"), reply("t2", "two")+reply("t2b", "two"))
	writeFile(t, filepath.Join(dir, "sub", "three.py"), reply("t3", "three"))
	writeFile(t, filepath.Join(dir, "sub", "requirements.txt"), "# pinned\nattrs\n\n")
	r := runCLI(t, "", append([]string{"deploy", dir, "--prefix", "u-"}, addr...)...)
	require.Equal(t, 0, r.code, r.stderr)
	info, err := s.c.PyDumpSessions(context.Background(), &gears.PyDumpSessionsOptions{Sessions: []string{"u-one", "u-two", "u-sub__three"}})
	require.NoError(t, err)
	require.Len(t, info, 3)
	assert.Equal(t, []string{"attrs"}, info[0].Requirements, "header")
	assert.Empty(t, info[1].Requirements)
	assert.Equal(t, []string{"attrs"}, info[2].Requirements, "requirements.txt beside the file")

	r = runCLI(t, "", append([]string{"reqs"}, addr...)...)
	require.Equal(t, 0, r.code, r.stderr)
	reqs, err := s.c.PyDumpReqs(context.Background())
	require.NoError(t, err)
	require.Len(t, reqs, 1)
	assert.Equal(t, fmt.Sprintf("NAME   INSTALLED  DOWNLOADED  SESSIONS  OS%s  PATH\nattrs  true       true        2         %s  %s\n",
		strings.Repeat(" ", len(reqs[0].CompiledOs)-2), reqs[0].CompiledOs, reqs[0].Path), r.stdout)

	// ls: the table.
	one, two, three := s.session(t, "u-one"), s.session(t, "u-two"), s.session(t, "u-sub__three")
	_, err = s.c.Trigger(context.Background(), "t2")
	require.NoError(t, err)
	r = runCLI(t, "", append([]string{"ls"}, addr...)...)
	require.Equal(t, 0, r.code, r.stderr)
	desc := func(id string) string {
		ss, err := s.c.PyDumpSessions(context.Background(), &gears.PyDumpSessionsOptions{Sessions: []string{id}})
		require.NoError(t, err)
		return oneLine(ss[0].Description, descWidth)
	}
	w := func(format string, args ...any) string { return fmt.Sprintf(format, args...) }
	idw := max(len(one[0]), len(two[0]), len(two[1]), len(three[0]))
	want := w("%-*s  SESSION       READER         TRIGGER/PREFIX  MODE  RUNS  FAILURES  LAST ERROR  DESCRIPTION\n", idw, "ID") +
		w("%-*s  u-one         CommandReader  t1              sync  0     0         -           %s\n", idw, one[0], desc("u-one")) +
		w("%-*s  u-sub__three  CommandReader  t3              sync  0     0         -           %s\n", idw, three[0], desc("u-sub__three")) +
		w("%-*s  u-two         CommandReader  t2              sync  1     0         -           %s\n", idw, two[0], desc("u-two")) +
		w("%-*s  u-two         CommandReader  t2b             sync  0     0         -           %s\n", idw, two[1], desc("u-two")) +
		"\n" +
		"SESSION       REGISTRATIONS  REQUIREMENTS  DESCRIPTION\n" +
		w("u-one         1              attrs         %s\n", desc("u-one")) +
		w("u-sub__three  1              attrs         %s\n", desc("u-sub__three")) +
		w("u-two         2              -             %s\n", desc("u-two"))
	assert.Equal(t, want, sortedTable(r.stdout))

	// unregister by id, then a session's all, then an unknown id.
	r = runCLI(t, "", append([]string{"unregister", one[0]}, addr...)...)
	assert.Equal(t, result{stdout: "unregistered " + one[0] + "\n"}, r)
	r = runCLI(t, "", append([]string{"unregister", "--session", "u-two"}, addr...)...)
	assert.Equal(t, result{stdout: "unregistered " + two[0] + " (session u-two)\nunregistered " + two[1] + " (session u-two)\n"}, r)
	assert.Equal(t, map[string]int{"t3": 1}, s.triggers(t))
	r = runCLI(t, "", append([]string{"unregister", one[0]}, addr...)...)
	assert.Equal(t, result{code: 1, stderr: "gears unregister: " + one[0] + ": execution is not registered\n"}, r)
	r = runCLI(t, "", append([]string{"unregister", "--session", "u-two"}, addr...)...)
	assert.Equal(t, result{code: 1, stderr: "gears unregister: session u-two has no registrations\n"}, r)
	r = runCLI(t, "", append([]string{"unregister"}, addr...)...)
	assert.Equal(t, 2, r.code)
}

// sortedTable sorts the rows of each table in ls output (the server lists in its own order).
func sortedTable(out string) string {
	var b strings.Builder
	for i, block := range strings.Split(strings.TrimSuffix(out, "\n"), "\n\n") {
		if i > 0 {
			b.WriteString("\n")
		}
		rows := strings.Split(block, "\n")
		body := rows[1:]
		sortStrings(body)
		b.WriteString(strings.Join(append(rows[:1], body...), "\n") + "\n")
	}
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestHelp(t *testing.T) {
	r := runCLI(t, "", "--help")
	assert.Equal(t, 0, r.code)
	for _, cmd := range commands {
		assert.Regexp(t, regexp.MustCompile(`(?m)^  `+cmd.name+` +\S`), r.stdout)
		h := runCLI(t, "", cmd.name, "--help")
		assert.Equal(t, 0, h.code, cmd.name)
		assert.True(t, strings.HasPrefix(h.stdout, "usage: gears "+cmd.name+" "), cmd.name)
		assert.Regexp(t, `\nExamples:\n  .*gears `, h.stdout, cmd.name)
		assert.Empty(t, h.stderr)
	}
	r = runCLI(t, "", "deploy")
	assert.Equal(t, result{code: 2, stderr: "gears deploy: expected at least 1 argument(s), got 0 (see gears deploy --help)\n"}, r)
	r = runCLI(t, "", "deploy", ".", "--prune")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "--prune needs --prefix")
	r = runCLI(t, "", "ls", "--addr", "x:1", "--url", "redis://x:1")
	assert.Equal(t, result{code: 2, stderr: "gears ls: give --addr or --url, not both\n"}, r)
	r = runCLI(t, "", "ls", "--bogus")
	assert.Equal(t, 2, r.code)
	assert.True(t, strings.HasPrefix(r.stderr, "flag provided but not defined: -bogus\nusage: gears ls "), r.stderr)
}
