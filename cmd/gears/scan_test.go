package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSessionName(t *testing.T) {
	for rel, want := range map[string]string{
		"audit.py":              "audit",
		"billing/audit.py":      "billing__audit",
		"a/b/c.py":              "a__b__c",
		"my file.v2.py":         "my-file-v2",
		"snake_case-kebab.py":   "snake_case-kebab",
		"ünï/cödé.py":           "-n-__c-d-",
		"dir.with.dots/x.py":    "dir-with-dots__x",
		"UPPER/Mixed09.py":      "UPPER__Mixed09",
		"no_extension_here.txt": "no_extension_here-txt",
	} {
		assert.Equal(t, want, sessionName(rel), rel)
	}
}

func TestScan(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "top.py"), "# gears: requirements=a==1, b\n# more comment\nx = 1\n")
	writeFile(t, filepath.Join(dir, "none.py"), "# gears: requirements=\nx = 1\n")
	writeFile(t, filepath.Join(dir, "late.py"), "x = 1\n# gears: requirements=ignored\n")
	writeFile(t, filepath.Join(dir, "sub", "s.py"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "sub", "requirements.txt"), "# comment\nc>=2  # why\n\nd\n")
	writeFile(t, filepath.Join(dir, ".git", "hook.py"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "sub", "__pycache__", "cached.py"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "notes.txt"), "not python\n")
	common := filepath.Join(t.TempDir(), "reqs.txt")
	writeFile(t, common, "common==3\n")

	snap, err := scan([]string{dir}, "p-", common)
	require.NoError(t, err)
	got := map[string][]string{}
	var order []string
	for _, f := range snap.files {
		require.NoError(t, f.err, f.path)
		got[f.session] = f.reqs
		order = append(order, f.session+"<"+f.rel)
	}
	assert.Equal(t, []string{"p-late<late.py", "p-none<none.py", "p-sub__s<sub/s.py", "p-top<top.py"}, order)
	assert.Equal(t, []string{"a==1", "b"}, got["p-top"], "header")
	assert.Nil(t, got["p-none"], "an empty header means none")
	assert.Equal(t, []string{"common==3"}, got["p-late"], "a header below code does not count: --requirements")
	assert.Equal(t, []string{"c>=2", "d"}, got["p-sub__s"], "requirements.txt beside the file")

	// The fingerprint follows the contents and the requirements.
	again, err := scan([]string{dir}, "p-", common)
	require.NoError(t, err)
	assert.Equal(t, snap.fp, again.fp)
	writeFile(t, filepath.Join(dir, "sub", "requirements.txt"), "c>=3\n")
	changed, err := scan([]string{dir}, "p-", common)
	require.NoError(t, err)
	assert.NotEqual(t, snap.fp, changed.fp)

	// A PATH that is a file: its base name.
	one, err := scan([]string{filepath.Join(dir, "sub", "s.py")}, "", "")
	require.NoError(t, err)
	require.Len(t, one.files, 1)
	assert.Equal(t, "s", one.files[0].session)
	assert.Equal(t, []string{"c>=3"}, one.files[0].reqs)
}

func TestScanErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.b.py"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "a-b.py"), "x = 1\n")
	_, err := scan([]string{dir}, "", "")
	assert.EqualError(t, err, filepath.Join(dir, "a-b.py")+" and "+filepath.Join(dir, "a.b.py")+
		` would both be session a-b (rename one: "a-b.py" and "a.b.py" make the same name)`)

	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "x", "y.py"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "x__y.py"), "x = 1\n")
	_, err = scan([]string{dir}, "", "")
	assert.ErrorContains(t, err, "would both be session x__y")

	_, err = scan([]string{filepath.Join(dir, "x__y.py"), filepath.Join(dir, "x__y.py")}, "", "")
	assert.EqualError(t, err, filepath.Join(dir, "x__y.py")+" is given twice")
	_, err = scan([]string{filepath.Join(dir, "missing")}, "", "")
	assert.True(t, os.IsNotExist(err), "%v", err)
	writeFile(t, filepath.Join(dir, "n.txt"), "")
	_, err = scan([]string{filepath.Join(dir, "n.txt")}, "", "")
	assert.EqualError(t, err, filepath.Join(dir, "n.txt")+" is not a .py file")

	// A file's own problem fails that file only.
	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.py"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "sub", "bad.py"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "sub", "requirements.txt"), "-r other.txt\n")
	writeFile(t, filepath.Join(dir, "two.py"), "# gears: requirements=a\n# gears: requirements=b\nx = 1\n")
	writeFile(t, filepath.Join(dir, "empty.py"), "\n")
	snap, err := scan([]string{dir}, "", "")
	require.NoError(t, err)
	errs := map[string]string{}
	for _, f := range snap.files {
		if f.err != nil {
			errs[f.session] = f.err.Error()
		}
	}
	assert.Equal(t, map[string]string{
		"sub__bad": filepath.Join(dir, "sub", "requirements.txt") + ":1: pip options (-r other.txt) are not supported; list requirement specifiers only",
		"two":      "more than one '# gears: requirements=' line",
		"empty":    filepath.Join(dir, "empty.py") + " is empty",
	}, errs)
}

func TestDeployCollisionBeforeAnyIO(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a b.py"), "x = 1\n")
	writeFile(t, filepath.Join(dir, "a-b.py"), "x = 1\n")
	// Nothing listens on port 1: the collision is reported before any connection is tried.
	r := runCLI(t, "", "deploy", dir, "--addr", "127.0.0.1:1")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "", r.stdout)
	assert.Equal(t, "gears deploy: "+filepath.Join(dir, "a b.py")+" and "+filepath.Join(dir, "a-b.py")+
		` would both be session a-b (rename one: "a b.py" and "a-b.py" make the same name)`+"\n", r.stderr)
}
