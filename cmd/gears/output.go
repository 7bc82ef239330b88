package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/gearsgo/gears"
)

// isTerminal reports whether f is a terminal (a character device). golang.org/x/term is not a
// dependency of this module, and this is all the CLI needs to know.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// colorFor reports whether to colour what goes to f: only on a terminal, and never when NO_COLOR is
// set to anything (https://no-color.org).
func colorFor(f *os.File) bool {
	if _, set := os.LookupEnv("NO_COLOR"); set {
		return false
	}
	return isTerminal(f)
}

// ANSI colours.
const (
	red    = "31"
	green  = "32"
	yellow = "33"
	cyan   = "36"
	dim    = "2"
)

func paint(on bool, code, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (c *cli) paintOut(code, s string) string { return paint(c.colorOut, code, s) }
func (c *cli) paintErr(code, s string) string { return paint(c.colorErr, code, s) }

// writeDetails writes what an error's one-line text leaves out: the Python traceback of a server
// error, line by line under indent (or the server's text when it spans several lines). src is the
// script that was sent, or "": the server cannot show the source lines of a script it got as a string
// (File "<string>"), so they are taken from src and shown under their frame, and under a syntax
// error's "(<string>, line N)".
func writeDetails(w io.Writer, err error, indent, src string) {
	var ge *gears.Error
	if !errors.As(err, &ge) {
		return
	}
	var srcLines []string
	if src != "" {
		srcLines = strings.Split(src, "\n")
	}
	source := func(n int) (string, bool) {
		if n < 1 || n > len(srcLines) || strings.TrimSpace(srcLines[n-1]) == "" {
			return "", false
		}
		return strings.TrimSpace(srcLines[n-1]), true
	}
	var lines []string
	switch {
	case len(ge.Traceback) > 0:
		for _, l := range ge.Traceback {
			lines = append(lines, strings.Split(strings.TrimRight(l, "\n"), "\n")...)
		}
	case strings.Contains(ge.Msg, "\n"):
		lines = strings.Split(strings.TrimRight(ge.Msg, "\n"), "\n")
	default:
		if m := syntaxLine.FindStringSubmatch(ge.Msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			if l, ok := source(n); ok {
				fmt.Fprintf(w, "%sline %d: %s\n", indent, n, l)
			}
		}
		return
	}
	for i, l := range lines {
		fmt.Fprintln(w, indent+l)
		m := stringFrame.FindStringSubmatch(l)
		if m == nil || (i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    ")) {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if s, ok := source(n); ok {
			fmt.Fprintln(w, indent+"    "+s)
		}
	}
}

var (
	stringFrame = regexp.MustCompile(`^  File "<string>", line (\d+)`)
	syntaxLine  = regexp.MustCompile(`\(<string>, line (\d+)\)`)
)

// writeErrorText writes one error text of a reply (a Python traceback list, say) readably: the
// exception line first, the traceback indented below (with src's lines, see writeDetails).
func writeErrorText(w io.Writer, prefix, text, src string) {
	ge := gears.ParseError(text)
	fmt.Fprintln(w, prefix+strings.TrimPrefix(ge.Error(), "gears: "))
	writeDetails(w, ge, "    ", src)
}

// formatRecord renders a result record: a string as it is (RedisGears sends records as the str() of
// the Python value unless convertToStr=False), a number as digits, an array as [a, b] with quoted
// strings inside, an error element as "error: …".
func formatRecord(v any) string {
	switch x := v.(type) {
	case string:
		return x
	default:
		return formatNested(v)
	}
}

func formatNested(v any) string {
	switch x := v.(type) {
	case nil:
		return "(nil)"
	case string:
		return strconv.Quote(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case *gears.Error:
		return "error: " + x.Msg
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatNested(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// writeResult prints an execution's records on stdout, one a line, and its errors on stderr; it
// returns 1 when there were errors. src is the script that ran, when known (see writeDetails).
func (c *cli) writeResult(res *gears.ExecResult, src string) int {
	for _, r := range res.Results {
		fmt.Fprintln(c.stdout, formatRecord(r))
	}
	for _, e := range res.Errors {
		writeErrorText(c.stderr, c.paintErr(red, "error:")+" ", e, src)
	}
	if len(res.Errors) > 0 {
		return 1
	}
	return 0
}

// table writes aligned columns; the header is dimmed on a terminal.
type table struct {
	tw    *tabwriter.Writer
	color bool
}

func newTable(w io.Writer, color bool, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), color: color}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.ReplaceAll(c, "\t", " ")
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() { _ = t.tw.Flush() }

// oneLine squeezes a text (a traceback, a description) into one table cell of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
