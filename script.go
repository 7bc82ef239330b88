package gears

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Script is a server-side Python function for Command.
//
// Source is Python 3.7 code (RedisGears 1.2 embeds CPython 3.7) that defines Function, and Then when it
// is set. Function is called with the trigger's arguments as positional str arguments and returns the
// reply: bytes, str, int, float (sent as "%f" text), bool (an integer), or a list of these; None, dict,
// tuple and bytearray are not encodable and reply "PY RECORD". Function may instead return a
// gearsFuture() that a thread resolves; the reply is then what the future was resolved with.
//
// Then, optional, names a second function that runs as the next step of the registration and receives
// what Function returned (or what its future was resolved with); its return value is the reply. Threads
// that a script starts must not call execute() or atomic() (that deadlocks RedisGears 1.2 under
// concurrent triggers), so work that needs Redis after such a thread belongs in Then.
//
// Requirements are pip requirement specifiers the server installs before registering, e.g.
// "requests==2.31.0".
type Script struct {
	// Function is the name of the Python function the trigger calls.
	Function string
	// Then, optional, is the name of the function that runs on Function's result as the next step.
	Then string
	// Source is the Python 3.7 code that defines Function (and Then).
	Source string
	// Requirements are pip requirement specifiers installed before registering.
	Requirements []string

	// defaults are Command options the script comes with (NewCacheGet: AsyncLocal, WithIdempotent).
	// Command applies them before its own opts, which override them.
	defaults []Option
	// lookup, when set, is a Go-side fast path a Func tries before the trigger (NewCacheGet: a hit is
	// one GET of the key the Go side computes). It returns what RG.TRIGGER would have replied, as
	// go-redis reads it, and true; or false when the trigger must run. It must keep every semantic of
	// the server function for the calls it answers.
	lookup func(ctx context.Context, rdb redis.UniversalClient, args []any) (reply any, ok bool)
	// route, when set, computes the key a call with these arguments touches (NewCacheGet: the URL's cache
	// key). On a Redis Cluster the Func then sends RG.TRIGGERONKEY <trigger> <key> <args…>, so that the
	// call runs on the shard that owns the key, and Function must accept that form. ok false: the Func
	// sends the plain RG.TRIGGER.
	route func(args []any) (key string, ok bool)
	// lookupFor is the code lookup and route were made for (scriptCode): a copy of the Script whose
	// Function, Then or Source was changed is other code, and loses both.
	lookupFor string
}

// scriptCode identifies what a Script runs, for lookupFor.
func scriptCode(s Script) string {
	return s.Function + "\x00" + s.Then + "\x00" + s.Source
}

// fastPath is the lookup a Func may use: nil when there is none, or when the Script's code is no longer
// the code it was made for.
func (s Script) fastPath() func(ctx context.Context, rdb redis.UniversalClient, args []any) (any, bool) {
	if s.lookup == nil || s.lookupFor != scriptCode(s) {
		return nil
	}
	return s.lookup
}

// keyRoute is the route a Func may use: nil when there is none, or when the Script's code is no longer
// the code it was made for (another Function could not take the key as its first argument).
func (s Script) keyRoute() func(args []any) (string, bool) {
	if s.route == nil || s.lookupFor != scriptCode(s) {
		return nil
	}
	return s.route
}

//go:embed gears/templates/*.py
var templateFS embed.FS

// commandTemplate renders gears/templates/command.py: the script's source followed by the CommandReader
// registration.
var commandTemplate = template.Must(template.New("command.py").
	Funcs(template.FuncMap{"py": pyLiteral}).
	ParseFS(templateFS, "gears/templates/command.py"))

// pythonName matches what the template may call: an identifier, optionally dotted (module.func).
var pythonName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// commandParams are the template's inputs.
type commandParams struct {
	Source   string
	Function string
	Then     string
	Trigger  string
	Mode     string
	Desc     string
}

// validate checks what the template splices into Python code unquoted.
func (s Script) validate() error {
	if !pythonName.MatchString(s.Function) {
		return fmt.Errorf("gears: Script.Function %q is not a Python function name", s.Function)
	}
	if s.Then != "" && !pythonName.MatchString(s.Then) {
		return fmt.Errorf("gears: Script.Then %q is not a Python function name", s.Then)
	}
	return nil
}

// renderCommand renders the registration script for trigger.
func renderCommand(p commandParams) (string, error) {
	var b strings.Builder
	if err := commandTemplate.Execute(&b, p); err != nil {
		return "", fmt.Errorf("gears: rendering command template: %w", err)
	}
	return b.String(), nil
}

// pyLiteral quotes s as a Python 3 str literal. A JSON string is one: every escape json.Marshal writes
// (\", \\, \n, \u00XX, …) means the same in Python, and it escapes all control characters, so no value
// can break out of its literal.
func pyLiteral(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("gears: %q is not valid UTF-8", s)
	}
	b, err := json.Marshal(s)
	return string(b), err
}

// hashMarker precedes the content hash in a registration's description.
const hashMarker = "gears:"

// contentHash identifies a registration's code: the rendered script (which includes the trigger, the
// mode and the user's description), the requirements and the session id. 128 bits of SHA-256 in hex.
func contentHash(script string, reqs []string, sessionID string) string {
	h := sha256.New()
	h.Write([]byte(script))
	for _, r := range reqs {
		h.Write([]byte{0})
		h.Write([]byte(r))
	}
	h.Write([]byte{0, 0})
	h.Write([]byte(sessionID))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// withMarker appends the marker that identifies the code to a description: "gears:<hash>", or
// "gears:<hash>/v<version>" for a code version set with WithVersion.
func withMarker(desc, hash string, version uint64) string {
	m := hashMarker + hash
	if version > 0 {
		m += "/v" + strconv.FormatUint(version, 10)
	}
	if desc == "" {
		return m
	}
	return desc + " " + m
}

// parseMarker extracts the content hash and version from a description written by withMarker; "" and 0
// if it has none.
func parseMarker(desc string) (hash string, version uint64) {
	i := strings.LastIndex(desc, hashMarker)
	if i < 0 {
		return "", 0
	}
	m := desc[i+len(hashMarker):]
	if j := strings.Index(m, "/v"); j >= 0 {
		v, err := strconv.ParseUint(m[j+2:], 10, 64)
		if err != nil {
			return "", 0
		}
		m, version = m[:j], v
	}
	if len(m) != 32 {
		return "", 0
	}
	if _, err := hex.DecodeString(m); err != nil {
		return "", 0
	}
	return m, version
}

// sessionIDFor derives the session id from a trigger: "gears_<trigger>" when the trigger only holds the
// characters RedisGears allows in ids ([A-Za-z0-9_-]); otherwise the other characters become '_' and a
// short hash of the trigger keeps distinct triggers apart.
func sessionIDFor(trigger string) string {
	var b strings.Builder
	b.WriteString("gears_")
	clean := true
	for _, c := range trigger {
		if isIDChar(c) {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
			clean = false
		}
	}
	if !clean {
		sum := sha256.Sum256([]byte(trigger))
		b.WriteByte('_')
		b.WriteString(hex.EncodeToString(sum[:4]))
	}
	return b.String()
}

func isIDChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// validSessionID reports whether id is accepted by RG.PYEXECUTE ID.
func validSessionID(id string) bool {
	if id == "" {
		return false
	}
	for _, c := range id {
		if !isIDChar(c) {
			return false
		}
	}
	return true
}
