package gears

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Error is an error reply of a RedisGears server, or an error element inside a reply.
//
// Msg is the server's text exactly as it arrived. When that text is a Python traceback (the repr of the
// list that traceback.format_exception returns, which is how RedisGears reports a Python exception),
// Traceback holds its lines, Frames the "File …, line …, in …" entries and Exception the final
// "Type: message" part; ExceptionType and ExceptionMessage split it. For the traceback-less form
// "Error type: <class 'X'>, Value: msg" only the Exception fields are set.
type Error struct {
	// Msg is the complete server text.
	Msg string
	// Traceback holds the traceback lines (without trailing newlines) when Msg is a traceback list.
	Traceback []string
	// Frames are the stack frames of the traceback, outermost first.
	Frames []Frame
	// Exception is the exception line(s) of a traceback, e.g. "NameError: name 'x' is not defined".
	Exception string
	// ExceptionType is the exception's type name, e.g. "NameError" or "gears.error".
	ExceptionType string
	// ExceptionMessage is the exception's message, e.g. "name 'x' is not defined".
	ExceptionMessage string

	cause error
}

// Frame is one stack frame of a Python traceback.
type Frame struct {
	// File is the file name as Python printed it; scripts sent with RG.PYEXECUTE are "<string>".
	File string
	// Line is the line number within File.
	Line int
	// Func is the function name ("<module>", "<lambda>", …).
	Func string
	// Source is the source line Python printed under the frame, when it had one.
	Source string
}

// Error returns the server text, with the parsed exception line when the text was a traceback so that
// logs stay readable.
func (e *Error) Error() string {
	if len(e.Traceback) > 0 && e.Exception != "" {
		var b strings.Builder
		b.WriteString("gears: ")
		b.WriteString(e.Exception)
		if n := len(e.Frames); n > 0 {
			f := e.Frames[n-1]
			fmt.Fprintf(&b, " (at %s line %d, in %s)", f.File, f.Line, f.Func)
		}
		return b.String()
	}
	return "gears: " + e.Msg
}

// Unwrap returns the go-redis error the reply arrived as, if any, so that go-redis' own error
// classification (errors.As with its typed errors) keeps working.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether e matches one of this package's sentinel errors, by the server texts that sentinel
// stands for.
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinel)
	if !ok {
		return false
	}
	return s.matches(e.Msg)
}

// sentinel is the type of the package's sentinel errors: it matches an *Error by the fixed server
// texts (spec sections 0–3) it stands for.
type sentinel struct {
	msg      string
	contains []string
	// both, when set, must all occur in the text (for texts with a variable part in the middle).
	both []string
}

func newSentinel(msg string, contains []string) *sentinel {
	return &sentinel{msg: msg, contains: contains}
}

// Error returns the sentinel's description.
func (s *sentinel) Error() string { return s.msg }

func (s *sentinel) matches(text string) bool {
	if len(s.both) > 0 {
		for _, c := range s.both {
			if !strings.Contains(text, c) {
				return false
			}
		}
		return true
	}
	for _, c := range s.contains {
		if strings.Contains(text, c) {
			return true
		}
	}
	return false
}

// Sentinel errors, matched with errors.Is against an *Error by the server's fixed texts.
var (
	// ErrUnknownTrigger means no registration has this trigger ("ERR subcommand not found").
	ErrUnknownTrigger error = newSentinel("gears: unknown trigger", []string{"ERR subcommand not found"})
	// ErrTriggerRegistered means another registration owns the trigger ("trigger already registered", also
	// "… in this session").
	ErrTriggerRegistered error = newSentinel("gears: trigger already registered", []string{"trigger already registered"})
	// ErrSessionExists means RG.PYEXECUTE ID of a live session without UPGRADE ("Session <id> already exists").
	ErrSessionExists error = &sentinel{msg: "gears: session already exists", both: []string{"Session ", " already exists"}}
	// ErrSessionNotFound means the session named in RG.PYPROFILE or REPLACE_WITH does not exist.
	ErrSessionNotFound error = newSentinel("gears: session does not exist", []string{"session does not exists", "session does not exist"})
	// ErrRequirements means the requirements could not be downloaded or installed.
	ErrRequirements error = newSentinel("gears: requirements not satisfied", []string{
		"Could not satisfy requirements", "Failed installing requirements"})
	// ErrExecutionNotFound means no execution has this id ("execution plan does not exist",
	// RG.ABORTEXECUTION's "execution does not exist").
	ErrExecutionNotFound error = newSentinel("gears: execution does not exist", []string{
		"execution plan does not exist", "execution does not exist"})
	// ErrNotRegistered means RG.UNREGISTER of an unknown id ("execution is not registered"; 1.0: "execution
	// does not registered").
	ErrNotRegistered error = newSentinel("gears: registration does not exist", []string{
		"execution is not registered", "execution does not registered"})
	// ErrStillRunning means RG.GETRESULTS of an execution that has not finished.
	ErrStillRunning error = newSentinel("gears: execution is still running", []string{"execution is still running"})
	// ErrNotFinished means RG.DROPEXECUTION of a running execution.
	ErrNotFinished error = newSentinel("gears: execution not finished", []string{"can not drop a not yet finished execution"})
	// ErrMaxIdle means the execution was idle longer than ExecutionMaxIdleTime.
	ErrMaxIdle error = newSentinel("gears: execution max idle reached", []string{"Execution max idle reached"})
	// ErrMultiNotAllowed means a non-sync trigger or RG.PYEXECUTE inside MULTI/EXEC or Lua.
	ErrMultiNotAllowed error = newSentinel("gears: not allowed inside MULTI or Lua", []string{
		"can not run a non-sync execution inside a MULTI/LUA",
		"Can not run gears inside a multi exec",
		"Can not run gear inside multi exec or lua",
		"Creating async record is not allow"})
	// ErrClusterUninitialized means the cluster is not ready ("ERRCLUSTER Uninitialized cluster state").
	ErrClusterUninitialized error = newSentinel("gears: cluster state uninitialized", []string{"Uninitialized cluster state"})
	// ErrUnknownReader means the script used a reader that does not exist or cannot run/register.
	ErrUnknownReader error = newSentinel("gears: unknown reader", []string{
		"reader does not exists", "the given reader are not exists", "Given reader do not support run or not exists"})
	// ErrSyntax means the script is not valid Python.
	ErrSyntax error = newSentinel("gears: python syntax error", []string{"SyntaxError", "invalid syntax"})
	// ErrUnknownCommand means the server does not have the RG.* command (no RedisGears, or a 1.0 server asked
	// for a 1.2 command).
	ErrUnknownCommand error = newSentinel("gears: unknown command", []string{"ERR unknown command", "unknown command '"})
	// ErrUnknownSubcommand means RG.GETEXECUTION with a scope other than SHARD/CLUSTER, or RG.PYPROFILE with
	// an unknown sub-command.
	ErrUnknownSubcommand error = newSentinel("gears: unknown subcommand", []string{"unknown subcommand", "Wrong subcommand given"})
)

// ErrConflict is returned by a Command with the Fail policy when its trigger or session already holds
// different code; errors.Is(err, ErrConflict) matches it.
var ErrConflict = errors.New("gears: trigger registered with different code")

// ErrAborted is returned by a Func whose execution was aborted while it ran: RedisGears then replies
// with no result at all. That happens when the registration is upgraded or unregistered with its
// pending executions aborted (RG.PYEXECUTE … UPGRADE, RG.UNREGISTER … ABORTPENDING), or on
// RG.ABORTEXECUTION. Whether to call again is the caller's choice: the function may have done part of
// its work.
var ErrAborted = errors.New("gears: the execution was aborted and returned no result")

// ErrUnexpectedReply is matched (errors.Is) by every *DecodeError: the reply did not have the shape the
// caller asked for.
var ErrUnexpectedReply = errors.New("gears: unexpected reply")

// DecodeError reports a reply that does not fit the Go type it was to be decoded into.
type DecodeError struct {
	// Target names the Go type or structure being decoded.
	Target string
	// Reply is the offending (normalized) reply value.
	Reply any
	// Reason says what was wrong.
	Reason string
}

// Error describes the mismatch.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("gears: cannot decode reply %s into %s: %s", describe(e.Reply), e.Target, e.Reason)
}

// Is makes errors.Is(err, ErrUnexpectedReply) true.
func (e *DecodeError) Is(target error) bool { return target == ErrUnexpectedReply }

func decodeErr(target string, reply any, format string, args ...any) error {
	return &DecodeError{Target: target, Reply: reply, Reason: fmt.Sprintf(format, args...)}
}

// describe renders a reply value briefly for error messages.
func describe(v any) string {
	s := fmt.Sprintf("%#v", v)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// wrapErr turns a server error reply into *Error and leaves other errors (network, context, redis.Nil)
// as they are.
func wrapErr(err error) error {
	if err == nil || err == redis.Nil {
		return err
	}
	var ge *Error
	if errors.As(err, &ge) {
		return err
	}
	var re redis.Error
	if errors.As(err, &re) {
		e := parseError(re.Error())
		e.cause = err
		return e
	}
	return err
}

// parseError builds an *Error from server text, parsing Python tracebacks.
func parseError(msg string) *Error {
	e := &Error{Msg: msg}
	if lines, ok := parsePyStringList(msg); ok && len(lines) > 0 {
		e.Traceback = make([]string, len(lines))
		for i, l := range lines {
			e.Traceback[i] = strings.TrimRight(l, "\n")
		}
		e.parseTraceback()
		return e
	}
	// "Error type: <class 'SyntaxError'>, Value: invalid syntax (<string>, line 1)"
	if rest, ok := strings.CutPrefix(msg, "Error type: <class '"); ok {
		if typ, val, ok := strings.Cut(rest, "'>, Value: "); ok {
			e.ExceptionType = typ
			e.ExceptionMessage = val
			e.Exception = typ + ": " + val
		}
	}
	return e
}

// parseTraceback fills Frames and Exception from the traceback lines. The format is CPython's
// traceback.format_exception: an optional "Traceback (most recent call last):" header, then per frame
// `  File "f", line N, in fn` optionally followed by an indented source line, then the exception lines.
func (e *Error) parseTraceback() {
	lines := e.Traceback
	i := 0
	if i < len(lines) && strings.HasPrefix(lines[i], "Traceback (most recent call last)") {
		i++
	}
	// format_exception joins a frame's header and its source line into one list element
	// ("  File …, line 1, in f\n    x = 1\n"), so split elements on newlines first.
	var flat []string
	for _, l := range lines[i:] {
		flat = append(flat, strings.Split(l, "\n")...)
	}
	j := 0
	for j < len(flat) {
		l := flat[j]
		if !strings.HasPrefix(l, "  File ") {
			break
		}
		f, ok := parseFrame(l)
		if !ok {
			break
		}
		j++
		if j < len(flat) && strings.HasPrefix(flat[j], "    ") {
			f.Source = strings.TrimSpace(flat[j])
			j++
		}
		e.Frames = append(e.Frames, f)
	}
	var exc []string
	for _, l := range flat[j:] {
		if l != "" {
			exc = append(exc, l)
		}
	}
	e.Exception = strings.Join(exc, "\n")
	// The type is on the last line for most exceptions; SyntaxError prints the source and a caret first.
	last := ""
	if len(exc) > 0 {
		last = exc[len(exc)-1]
	}
	if typ, msg, ok := strings.Cut(last, ": "); ok && !strings.Contains(typ, " ") {
		e.ExceptionType, e.ExceptionMessage = typ, strings.TrimRight(msg, "\r\n")
	} else if !strings.Contains(last, " ") {
		e.ExceptionType = last
	}
}

// parseFrame parses `  File "<string>", line 1, in <lambda>`.
func parseFrame(l string) (Frame, bool) {
	rest, ok := strings.CutPrefix(l, `  File "`)
	if !ok {
		return Frame{}, false
	}
	file, rest, ok := strings.Cut(rest, `", line `)
	if !ok {
		return Frame{}, false
	}
	num, fn, _ := strings.Cut(rest, ", in ")
	n, err := strconv.Atoi(num)
	if err != nil {
		return Frame{}, false
	}
	return Frame{File: file, Line: n, Func: fn}, true
}

// parsePyStringList parses the repr of a Python list of str ("['a\n', "b'c"]"), which is how
// RedisGears sends tracebacks. It reports false if s is not exactly such a list.
func parsePyStringList(s string) ([]string, bool) {
	p := pyParser{s: s}
	if !p.eat('[') {
		return nil, false
	}
	var out []string
	p.skipSpace()
	if p.eat(']') {
		return out, p.done()
	}
	for {
		p.skipSpace()
		str, ok := p.pyString()
		if !ok {
			return nil, false
		}
		out = append(out, str)
		p.skipSpace()
		if p.eat(']') {
			return out, p.done()
		}
		if !p.eat(',') {
			return nil, false
		}
	}
}

// pyParser reads Python literal syntax (string reprs, PD dictionaries).
type pyParser struct {
	s   string
	pos int
}

func (p *pyParser) done() bool { p.skipSpace(); return p.pos == len(p.s) }

func (p *pyParser) eat(c byte) bool {
	if p.pos < len(p.s) && p.s[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *pyParser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

func (p *pyParser) skipSpace() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\n') {
		p.pos++
	}
}

// pyString reads a Python str literal in the form repr() produces: single or double quotes, escapes
// \\ \' \" \n \r \t \xNN \uNNNN \UNNNNNNNN.
func (p *pyParser) pyString() (string, bool) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", false
	}
	p.pos++
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String(), true
		case c == '\\' && p.pos+1 < len(p.s):
			e := p.s[p.pos+1]
			p.pos += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '\\', '\'', '"':
				b.WriteByte(e)
			case 'x', 'u', 'U':
				n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if p.pos+n > len(p.s) {
					return "", false
				}
				r, err := strconv.ParseUint(p.s[p.pos:p.pos+n], 16, 32)
				if err != nil {
					return "", false
				}
				b.WriteRune(rune(r))
				p.pos += n
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", false
}
