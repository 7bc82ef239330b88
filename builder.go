package gears

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Builder builds a RedisGears gear function in Go, as redgrease's GearFunction does in Python: a reader,
// then operations whose callables are Python 3.7 source text — a lambda ("lambda r: r['key']") or the
// name of a function defined in source given to Define. Run executes it once (RG.PYEXECUTE … run()),
// Register deploys it as a registration (through Deploy), Python shows the script.
//
// Every method returns a new Builder, so a partial chain can be shared. A wrong argument is kept and
// returned by Run, Register and RunAsync before any I/O.
type Builder struct {
	reader string // GB's reader name
	arg    string // the reader's argument: pattern, stream key or prefix, generator ("" none)
	desc   string
	defs   []string // Python source emitted before the chain
	steps  []string // rendered operations, e.g. "map(lambda r: r['key'])"
	err    error
}

// KeysReader reads the keys matching a glob pattern: records {'key', 'value', 'type', 'event'} (run), or
// the keys written under a prefix (Register).
func KeysReader(pattern string) *Builder { return &Builder{reader: "KeysReader", arg: pattern} }

// KeysOnlyReader reads the names of the keys matching a glob pattern (run only).
func KeysOnlyReader(pattern string) *Builder { return &Builder{reader: "KeysOnlyReader", arg: pattern} }

// StreamReader reads the entries of the stream key (run), or of the streams under a prefix (Register):
// records {'key', 'id', 'value'}.
func StreamReader(key string) *Builder { return &Builder{reader: "StreamReader", arg: key} }

// CommandReader is triggered by RG.TRIGGER (WithTrigger) or hooks a command (WithHook); Register only.
// Its record is [trigger, arg1, …].
func CommandReader() *Builder { return &Builder{reader: "CommandReader"} }

// ShardsIDReader yields one record per shard: its id (run only).
func ShardsIDReader() *Builder { return &Builder{reader: "ShardsIDReader"} }

// PythonReader yields what generator — a Python function without arguments that returns an iterable,
// e.g. a name defined with Define — produces (run only).
func PythonReader(generator string) *Builder {
	b := &Builder{reader: "PythonReader", arg: generator}
	return b.check(callable("PythonReader", generator))
}

// with returns a copy of b with step appended; a Builder that holds an error stays as it is.
func (b *Builder) with(step string, err error) *Builder {
	if b.err != nil {
		return b
	}
	c := *b
	c.steps = append(append([]string(nil), b.steps...), step)
	c.err = err
	return &c
}

func (b *Builder) check(err error) *Builder {
	if b.err == nil && err != nil {
		c := *b
		c.err = err
		return &c
	}
	return b
}

// callable checks a Python callable given as source text.
func callable(op, fn string) error {
	if strings.TrimSpace(fn) == "" {
		return fmt.Errorf("gears: %s needs a Python callable (a lambda or a function name)", op)
	}
	return nil
}

// Desc sets the builder's description (GB(desc=…)), shown by RG.DUMPREGISTRATIONS.
func (b *Builder) Desc(desc string) *Builder {
	c := *b
	c.desc = desc
	return &c
}

// Define adds Python source — functions, imports — that the callables may use; it is sent before the
// chain, in the order given.
func (b *Builder) Define(source string) *Builder {
	c := *b
	c.defs = append(append([]string(nil), b.defs...), strings.TrimRight(source, "\n"))
	return &c
}

// op renders an operation whose arguments are callables.
func (b *Builder) op(name string, fns ...string) *Builder {
	for _, fn := range fns {
		if err := callable(name, fn); err != nil {
			return b.with("", err)
		}
	}
	return b.with(name+"("+strings.Join(trimAll(fns), ", ")+")", nil)
}

func trimAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// Map replaces each record with fn(record).
func (b *Builder) Map(fn string) *Builder { return b.op("map", fn) }

// FlatMap replaces each record with the items of the list fn(record) returns. RedisGears emits them in
// reverse order (gears-spec.md §2.3).
func (b *Builder) FlatMap(fn string) *Builder { return b.op("flatmap", fn) }

// Filter keeps the records for which fn(record) is truthy.
func (b *Builder) Filter(fn string) *Builder { return b.op("filter", fn) }

// Foreach calls fn(record) for its side effects; records pass through unchanged.
func (b *Builder) Foreach(fn string) *Builder { return b.op("foreach", fn) }

// Accumulate folds the records of each shard with fn(accumulator, record); the accumulator starts as None.
func (b *Builder) Accumulate(fn string) *Builder { return b.op("accumulate", fn) }

// LocalGroupBy groups each shard's records by extractor(record) and folds each group with
// reducer(key, accumulator, record): records {'key', 'value'}.
func (b *Builder) LocalGroupBy(extractor, reducer string) *Builder {
	return b.op("localgroupby", extractor, reducer)
}

// GroupBy groups all records by extractor(record), across shards, and folds each group with
// reducer(key, accumulator, record): records {'key', 'value'}.
func (b *Builder) GroupBy(extractor, reducer string) *Builder {
	return b.op("groupby", extractor, reducer)
}

// BatchGroupBy collects all records of each key (extractor(record)) and calls reducer(key, records) once
// per key: records {'key', 'value'}.
func (b *Builder) BatchGroupBy(extractor, reducer string) *Builder {
	return b.op("batchgroupby", extractor, reducer)
}

// Collect moves every record to the shard that runs the execution.
func (b *Builder) Collect() *Builder { return b.with("collect()", nil) }

// Repartition moves each record to the shard that owns the key extractor(record).
func (b *Builder) Repartition(extractor string) *Builder { return b.op("repartition", extractor) }

// Limit keeps count records after skipping offset.
func (b *Builder) Limit(count, offset int) *Builder {
	if count < 0 || offset < 0 {
		return b.with("", fmt.Errorf("gears: Limit(%d, %d): count and offset must not be negative", count, offset))
	}
	return b.with(fmt.Sprintf("limit(%d, %d)", count, offset), nil)
}

// Aggregate folds all records: seqOp(accumulator, record) on each shard starting from a deep copy of zero
// (a Python expression, e.g. "0" or "[]"), then combOp(accumulator, shardResult) over the shards' results.
func (b *Builder) Aggregate(zero, seqOp, combOp string) *Builder {
	if err := callable("Aggregate", zero); err != nil {
		return b.with("", fmt.Errorf("gears: Aggregate needs the zero value as a Python expression"))
	}
	return b.op("aggregate", zero, seqOp, combOp)
}

// AggregateBy is Aggregate per key (extractor(record)); seqOp and combOp also receive the key first:
// records {'key', 'value'}.
func (b *Builder) AggregateBy(extractor, zero, seqOp, combOp string) *Builder {
	if err := callable("AggregateBy", zero); err != nil {
		return b.with("", fmt.Errorf("gears: AggregateBy needs the zero value as a Python expression"))
	}
	return b.op("aggregateby", extractor, zero, seqOp, combOp)
}

// Count replaces the records with their number (no record at all when there are none).
func (b *Builder) Count() *Builder { return b.with("count()", nil) }

// CountBy counts the records per extractor(record) — per record itself when extractor is "": records
// {'key', 'value'}.
func (b *Builder) CountBy(extractor string) *Builder {
	if strings.TrimSpace(extractor) == "" {
		return b.with("countby()", nil)
	}
	return b.op("countby", extractor)
}

// Sort sorts the records; RedisGears' own ordering applies (sort(reverse=True), the default, yields them
// ascending: gears-spec.md §2.3).
func (b *Builder) Sort(reverse bool) *Builder {
	return b.with("sort(reverse="+pyBool(reverse)+")", nil)
}

// Distinct keeps one record of each value.
func (b *Builder) Distinct() *Builder { return b.with("distinct()", nil) }

// Avg replaces the records with the average of extractor(record) — of float(record) when extractor is "".
func (b *Builder) Avg(extractor string) *Builder {
	if strings.TrimSpace(extractor) == "" {
		return b.with("avg()", nil)
	}
	return b.op("avg", extractor)
}

// chain renders the definitions and the GB(...) chain, without an action.
func (b *Builder) chain() (string, error) {
	var s strings.Builder
	for _, d := range b.defs {
		s.WriteString(d)
		s.WriteString("\n")
	}
	reader, err := pyLiteral(b.reader)
	if err != nil {
		return "", err
	}
	s.WriteString("GB(" + reader)
	if b.desc != "" {
		desc, err := pyLiteral(b.desc)
		if err != nil {
			return "", err
		}
		s.WriteString(", desc=" + desc)
	}
	s.WriteString(")")
	for _, st := range b.steps {
		s.WriteString(".")
		s.WriteString(st)
	}
	return s.String(), nil
}

// Python returns the script Run sends with no options — for CommandReader, the one Register sends with
// its trigger unset — so that it can be read, logged or tested.
func (b *Builder) Python() string {
	var script string
	var err error
	if b.reader == "CommandReader" {
		script, err = b.registerScript(&commandOptions{trigger: "<trigger>"})
	} else {
		script, err = b.runScript(&commandOptions{})
	}
	if err != nil {
		return "# " + strings.ReplaceAll(err.Error(), "\n", "\n# ") + "\n"
	}
	return script
}

// kwargs renders Python keyword arguments in a fixed order.
type kwargs []string

func (k *kwargs) add(name, value string) { *k = append(*k, name+"="+value) }

func (k *kwargs) str(name, v string) error {
	lit, err := pyLiteral(v)
	if err != nil {
		return err
	}
	k.add(name, lit)
	return nil
}

func (k *kwargs) list(name string, vs []string) error {
	lits := make([]string, len(vs))
	for i, v := range vs {
		lit, err := pyLiteral(v)
		if err != nil {
			return err
		}
		lits[i] = lit
	}
	k.add(name, "["+strings.Join(lits, ", ")+"]")
	return nil
}

// runScript renders the chain with .run(…).
func (b *Builder) runScript(o *commandOptions) (string, error) {
	if b.err != nil {
		return "", b.err
	}
	var k kwargs
	switch b.reader {
	case "CommandReader":
		return "", errors.New("gears: a CommandReader cannot run; Register it with WithTrigger or WithHook")
	case "PythonReader":
		k.add("", strings.TrimSpace(b.arg))
	case "KeysReader", "KeysOnlyReader", "StreamReader":
		if err := k.str("", b.arg); err != nil {
			return "", err
		}
	}
	if err := o.checkFor("run", b.reader); err != nil {
		return "", err
	}
	switch o.mode {
	case "":
	case Async, AsyncLocal:
		k.add("mode", "'"+string(o.mode)+"'")
	default:
		return "", fmt.Errorf("gears: run() takes mode Async or AsyncLocal, not %q", string(o.mode))
	}
	if o.convertToStr != nil {
		k.add("convertToStr", pyBool(*o.convertToStr))
	}
	if o.noScan {
		k.add("noScan", "True")
	}
	if o.readValue != nil {
		k.add("readValue", pyBool(*o.readValue))
	}
	if o.fromID != "" {
		if err := k.str("fromId", o.fromID); err != nil {
			return "", err
		}
	}
	chain, err := b.chain()
	if err != nil {
		return "", err
	}
	return chain + ".run(" + k.render() + ")\n", nil
}

// render joins the arguments; positional ones were added with an empty name.
func (k kwargs) render() string {
	out := make([]string, len(k))
	for i, a := range k {
		out[i] = strings.TrimPrefix(a, "=")
	}
	return strings.Join(out, ", ")
}

// registerScript renders the chain with .register(…).
func (b *Builder) registerScript(o *commandOptions) (string, error) {
	if b.err != nil {
		return "", b.err
	}
	var k kwargs
	switch b.reader {
	case "KeysReader", "StreamReader":
		if err := k.str("prefix", b.arg); err != nil {
			return "", err
		}
	case "CommandReader":
		switch {
		case o.trigger != "" && o.hook != "":
			return "", errors.New("gears: a CommandReader takes WithTrigger or WithHook, not both")
		case o.trigger != "":
			if err := k.str("trigger", o.trigger); err != nil {
				return "", err
			}
		case o.hook != "":
			if err := k.str("hook", o.hook); err != nil {
				return "", err
			}
			if o.keyPrefix != "" {
				if err := k.str("keyprefix", o.keyPrefix); err != nil {
					return "", err
				}
			}
		default:
			return "", errors.New("gears: a CommandReader registration needs WithTrigger or WithHook")
		}
	default:
		return "", fmt.Errorf("gears: a %s cannot be registered (only KeysReader, StreamReader and CommandReader)", b.reader)
	}
	if err := o.checkFor("register", b.reader); err != nil {
		return "", err
	}
	switch o.mode {
	case "":
	case Async, AsyncLocal, Sync:
		k.add("mode", "'"+string(o.mode)+"'")
	default:
		return "", fmt.Errorf("gears: unknown mode %q (want Async, AsyncLocal or Sync)", string(o.mode))
	}
	if o.convertToStr != nil {
		k.add("convertToStr", pyBool(*o.convertToStr))
	}
	if o.eventTypes != nil {
		if err := k.list("eventTypes", o.eventTypes); err != nil {
			return "", err
		}
	}
	if o.keyTypes != nil {
		if err := k.list("keyTypes", o.keyTypes); err != nil {
			return "", err
		}
	}
	if o.readValue != nil {
		k.add("readValue", pyBool(*o.readValue))
	}
	if o.commands != nil {
		if err := k.list("commands", o.commands); err != nil {
			return "", err
		}
	}
	if o.batch > 0 {
		k.add("batch", strconv.Itoa(o.batch))
	}
	if o.duration > 0 {
		k.add("duration", strconv.FormatInt(o.duration.Milliseconds(), 10))
	}
	if o.onFailedPolicy != "" {
		if o.mode == Sync && o.onFailedPolicy != FailContinue {
			return "", errors.New("gears: a Sync StreamReader registration only takes FailContinue (RedisGears refuses the others)")
		}
		if err := k.str("onFailedPolicy", string(o.onFailedPolicy)); err != nil {
			return "", err
		}
	}
	if o.retryInterval > 0 {
		k.add("onFailedRetryInterval", strconv.FormatInt(int64(o.retryInterval/time.Second), 10))
	}
	if o.trimStream != nil {
		k.add("trimStream", pyBool(*o.trimStream))
	}
	chain, err := b.chain()
	if err != nil {
		return "", err
	}
	return chain + ".register(" + k.render() + ")\n", nil
}

// Results are what an execution produced: its records, and the errors of the records whose steps
// raised. A run can return both.
type Results struct {
	// Records are the result records as RedisGears encodes them (with the default string conversion,
	// str(record) of each).
	Records []any
	// Errors are the execution's errors, Python tracebacks parsed.
	Errors []*Error
}

func resultsOf(r *ExecResult) Results {
	if r == nil {
		return Results{}
	}
	out := Results{Records: r.Results}
	for _, e := range r.Errors {
		out.Errors = append(out.Errors, parseError(e))
	}
	return out
}

// Run executes the gear function once (RG.PYEXECUTE … run()) and returns its records and errors. Options
// that apply: WithMode (Async or AsyncLocal), WithConvertToStr, WithNoScan and WithReadValue
// (KeysReader), WithFromID (StreamReader), WithRequirements.
func (b *Builder) Run(ctx context.Context, rdb redis.UniversalClient, opts ...Option) (Results, error) {
	script, o, err := b.prepareRun(rdb, opts)
	if err != nil {
		return Results{}, err
	}
	reply, err := NewClient(rdb).PyExecute(ctx, script, &PyExecuteOptions{Requirements: o.requirements})
	if err != nil {
		return Results{}, err
	}
	return resultsOf(reply.Result), nil
}

// RunAsync starts the gear function (RG.PYEXECUTE … run() UNBLOCKING) and returns a handle on the
// execution. Options as for Run.
func (b *Builder) RunAsync(ctx context.Context, rdb redis.UniversalClient, opts ...Option) (*Execution, error) {
	script, o, err := b.prepareRun(rdb, opts)
	if err != nil {
		return nil, err
	}
	// On a cluster the execution lives on the node that ran RG.PYEXECUTE, which gathers its results:
	// the handle keeps asking that node (a ClusterClient would send RG.GETRESULTS to any node).
	c, err := nodeOf(ctx, NewClient(rdb), anyNodeKey())
	if err != nil {
		return nil, err
	}
	reply, err := c.PyExecute(ctx, script, &PyExecuteOptions{Unblocking: true, Requirements: o.requirements})
	if err != nil {
		return nil, err
	}
	if reply.ExecutionID == "" {
		return nil, errors.New("gears: RG.PYEXECUTE … UNBLOCKING returned no execution id")
	}
	return &Execution{ID: reply.ExecutionID, client: c}, nil
}

func (b *Builder) prepareRun(rdb redis.UniversalClient, opts []Option) (string, *commandOptions, error) {
	if rdb == nil {
		return "", nil, errors.New("gears: Run needs a go-redis client")
	}
	var o commandOptions
	for _, opt := range opts {
		opt(&o)
	}
	script, err := b.runScript(&o)
	return script, &o, err
}

// Register deploys the gear function as a registration, in the session named with WithSessionID, through
// Deploy (created, upgraded or unchanged; the registration lock; WithVersion, WithOnConflict,
// WithDescription for the session). Reader options: WithMode, WithConvertToStr, WithEventTypes,
// WithKeyTypes, WithReadValue, WithCommands (KeysReader); WithBatch, WithDuration, WithOnFailedPolicy,
// WithRetryInterval, WithTrimStream (StreamReader); WithTrigger or WithHook (CommandReader).
func (b *Builder) Register(ctx context.Context, rdb redis.UniversalClient, opts ...Option) (Deployment, error) {
	if rdb == nil {
		return Deployment{}, errors.New("gears: Register needs a go-redis client")
	}
	var o commandOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.sessionID == "" {
		return Deployment{}, errors.New("gears: Register needs WithSessionID: the session is what the next version of the function upgrades")
	}
	script, err := b.registerScript(&o)
	if err != nil {
		return Deployment{}, err
	}
	return Deploy(ctx, rdb, Session{ID: o.sessionID, Source: script, Description: o.description}, opts...)
}

// Execution is a handle on an execution started by RunAsync.
type Execution struct {
	// ID is the execution id.
	ID     string
	client *Client
}

// Results returns the results of the finished execution (RG.GETRESULTS); while it runs, an error
// matching ErrStillRunning.
func (e *Execution) Results(ctx context.Context) (Results, error) {
	r, err := e.client.GetResults(ctx, e.ID)
	if err != nil {
		return Results{}, err
	}
	return resultsOf(r), nil
}

// Wait waits until the execution has finished and returns its results (RG.GETRESULTSBLOCKING). go-redis'
// ReadTimeout applies to the wait (see Client).
func (e *Execution) Wait(ctx context.Context) (Results, error) {
	r, err := e.client.GetResultsBlocking(ctx, e.ID)
	if err != nil {
		return Results{}, err
	}
	return resultsOf(r), nil
}

// Abort aborts the execution (RG.ABORTEXECUTION); a finished one is not an error.
func (e *Execution) Abort(ctx context.Context) error { return e.client.AbortExecution(ctx, e.ID) }

// Drop removes the finished execution from the server (RG.DROPEXECUTION).
func (e *Execution) Drop(ctx context.Context) error { return e.client.DropExecution(ctx, e.ID) }
