package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// The files of gears deploy.
//
// Session ids: every .py file under a PATH (walked recursively; directories whose name starts with "."
// and __pycache__ are skipped) becomes the session <prefix><name>, where name is the file's path
// relative to the PATH it was found under (a PATH that is a file: its base name) without ".py", made of
// [A-Za-z0-9_-] only: each "/" becomes "__", every other character outside that set becomes "-".
// So billing/audit.py is billing__audit and "my file.v2.py" is my-file-v2. Two files whose names
// come out the same (a.b.py and a-b.py; a/b.py and a__b.py) are an error before anything is sent.
//
// Requirements of a file, the first that applies:
//  1. a header comment among the comment lines at the top of the file:
//     # gears: requirements=requests==2.31.0,six
//     (comma-separated; "# gears: requirements=" with nothing after it means none);
//  2. a requirements.txt in the file's directory (one specifier a line; # comments and blank lines are
//     ignored; pip options such as -r or --index-url are refused);
//  3. the file given with --requirements.

// scriptFile is one .py file to deploy.
type scriptFile struct {
	path    string // on disk
	rel     string // relative to its PATH, with "/"
	session string
	source  string
	reqs    []string
	reqFrom string // where reqs came from: "header", a requirements.txt path, or ""
	fp      string // fingerprint of what would be deployed: session, source and requirements
	err     error  // the file could not be read or its requirements parsed: it fails before any I/O
}

// snapshot is every file of the PATHs at one moment.
type snapshot struct {
	files []*scriptFile // sorted by session id
	fp    string        // fingerprint of them all
}

// sessionName turns a relative path ("billing/audit.py") into the session name part ("billing__audit").
func sessionName(rel string) string {
	rel = strings.TrimSuffix(filepath.ToSlash(rel), ".py")
	var b strings.Builder
	for i, seg := range strings.Split(rel, "/") {
		if i > 0 {
			b.WriteString("__")
		}
		for _, r := range seg {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
				b.WriteRune(r)
			default:
				b.WriteByte('-')
			}
		}
	}
	return b.String()
}

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// scan reads the .py files under paths. Errors that concern the whole set (a missing PATH, two files
// with one session id, an unreadable --requirements file) are returned; a file's own problem is kept in
// its err.
func scan(paths []string, prefix, reqFile string) (*snapshot, error) {
	var common []string
	if reqFile != "" {
		var err error
		if common, err = readRequirements(reqFile); err != nil {
			return nil, err
		}
	}
	var files []*scriptFile
	for _, root := range paths {
		st, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			if !strings.HasSuffix(root, ".py") {
				return nil, fmt.Errorf("%s is not a .py file", root)
			}
			files = append(files, &scriptFile{path: root, rel: filepath.Base(root)})
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "__pycache__") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(d.Name(), ".py") || !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files = append(files, &scriptFile{path: p, rel: filepath.ToSlash(rel)})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	byID := map[string]*scriptFile{}
	for _, f := range files {
		name := sessionName(f.rel)
		if name == "" {
			return nil, fmt.Errorf("%s: no session name can be made of this file name", f.path)
		}
		f.session = prefix + name
		if other, dup := byID[f.session]; dup {
			if other.path == f.path {
				return nil, fmt.Errorf("%s is given twice", f.path)
			}
			return nil, fmt.Errorf("%s and %s would both be session %s (rename one: %q and %q make the same name)",
				other.path, f.path, f.session, other.rel, f.rel)
		}
		byID[f.session] = f
		f.load(common)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].session < files[j].session })
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%s\x00", f.session, f.fp)
	}
	return &snapshot{files: files, fp: hex.EncodeToString(h.Sum(nil))}, nil
}

// load reads the file's source and requirements and computes its fingerprint.
func (f *scriptFile) load(common []string) {
	b, err := os.ReadFile(f.path)
	if err != nil {
		f.err = err
		f.fp = "error: " + err.Error()
		return
	}
	f.source = string(b)
	reqs, found, err := headerRequirements(f.source)
	switch {
	case err != nil:
		f.err = err
	case found:
		f.reqs, f.reqFrom = reqs, "header"
	default:
		beside := filepath.Join(filepath.Dir(f.path), "requirements.txt")
		if _, err := os.Stat(beside); err == nil {
			f.reqs, f.err = readRequirements(beside)
			f.reqFrom = beside
		} else {
			f.reqs = common
		}
	}
	if f.err == nil && strings.TrimSpace(f.source) == "" {
		f.err = fmt.Errorf("%s is empty", f.path)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s", f.session, f.source)
	for _, r := range f.reqs {
		fmt.Fprintf(h, "\x00%s", r)
	}
	if f.err != nil {
		fmt.Fprintf(h, "\x00\x00%s", f.err)
	}
	f.fp = hex.EncodeToString(h.Sum(nil))
}

var headerRe = regexp.MustCompile(`^#\s*gears:\s*requirements\s*=(.*)$`)

// headerRequirements reads "# gears: requirements=a,b" from the comment lines at the top of a script.
func headerRequirements(src string) (reqs []string, found bool, err error) {
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 0, 64*1024), len(src)+1)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			break
		}
		m := headerRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if found {
			return nil, false, fmt.Errorf("more than one '# gears: requirements=' line")
		}
		found = true
		for _, r := range strings.Split(m[1], ",") {
			if r = strings.TrimSpace(r); r != "" {
				if strings.ContainsAny(r, " \t") {
					return nil, false, fmt.Errorf("requirement %q in the header holds a space", r)
				}
				reqs = append(reqs, r)
			}
		}
	}
	return reqs, found, nil
}

// readRequirements reads a requirements.txt: one specifier a line.
func readRequirements(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reqs []string
	for i, line := range strings.Split(string(b), "\n") {
		if j := strings.Index(line, "#"); j >= 0 {
			line = line[:j]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "-") {
			return nil, fmt.Errorf("%s:%d: pip options (%s) are not supported; list requirement specifiers only", path, i+1, line)
		}
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("%s:%d: %q: one requirement specifier a line, without spaces", path, i+1, line)
		}
		reqs = append(reqs, line)
	}
	return reqs, nil
}
