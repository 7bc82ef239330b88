package gears

import "context"

// PyExecuteOptions are the options of RG.PYEXECUTE. The zero value sends the script alone.
type PyExecuteOptions struct {
	// Unblocking makes a run() reply at once with its execution id (fetch results with GetResults).
	Unblocking bool
	// ID names the session (1.2); letters, digits, '-' and '_' only.
	ID string
	// Description is the session's description (1.2).
	Description string
	// Upgrade replaces the session ID's registrations with the script's, atomically (1.2).
	Upgrade bool
	// ReplaceWith names a session that the new one (with a different ID) replaces (1.2).
	ReplaceWith string
	// ForceReinstall reinstalls the requirements even if installed (1.2.4+).
	ForceReinstall bool
	// Requirements are pip requirement specifiers, e.g. "requests==2.31.0".
	Requirements []string
}

// args renders the options in the order RedisGears documents them.
func (o *PyExecuteOptions) args(script string) []any {
	args := []any{"RG.PYEXECUTE", script}
	if o == nil {
		return args
	}
	if o.Unblocking {
		args = append(args, "UNBLOCKING")
	}
	if o.ID != "" {
		args = append(args, "ID", o.ID)
	}
	if o.Description != "" {
		args = append(args, "DESCRIPTION", o.Description)
	}
	if o.Upgrade {
		args = append(args, "UPGRADE")
	}
	if o.ReplaceWith != "" {
		args = append(args, "REPLACE_WITH", o.ReplaceWith)
	}
	if o.ForceReinstall {
		args = append(args, "FORCE_REINSTALL_REQUIREMENTS")
	}
	if len(o.Requirements) > 0 {
		args = append(args, "REQUIREMENTS")
		for _, r := range o.Requirements {
			args = append(args, r)
		}
	}
	return args
}

// PyExecuteReply is what RG.PYEXECUTE answered. A script that registered or did neither register nor
// run answers OK: both fields are then empty.
type PyExecuteReply struct {
	// ExecutionID is the id of an UNBLOCKING run().
	ExecutionID string
	// Result holds the records and errors of a blocking run().
	Result *ExecResult
}

// ExecResult is the outcome of an execution: RG.PYEXECUTE of a run(), RG.GETRESULTS(BLOCKING).
type ExecResult struct {
	// Results are the result records, encoded as RedisGears does (strings, integers, arrays; error
	// elements as *Error).
	Results []any
	// Errors are the execution's error texts.
	Errors []string
}

// ExecutionInfo is one entry of RG.DUMPEXECUTIONS.
type ExecutionInfo struct {
	// ExecutionID is the execution's id.
	ExecutionID string
	// Status is created, running, pending_receive, pending_run, pending_cluster, pending_termination,
	// done or aborted.
	Status string
	// Registered reports whether a registration started the execution.
	Registered bool
}

// ExecutionScope selects RG.GETEXECUTION's SHARD or CLUSTER view; the empty scope lets the server choose
// (SHARD stand-alone, CLUSTER in a cluster).
type ExecutionScope string

// Scopes of RG.GETEXECUTION.
const (
	ScopeDefault ExecutionScope = ""
	ScopeShard   ExecutionScope = "SHARD"
	ScopeCluster ExecutionScope = "CLUSTER"
)

// ShardExecution is one shard's part of RG.GETEXECUTION.
type ShardExecution struct {
	// ShardID is the shard's id (40 zeros stand-alone).
	ShardID string
	// Plan is the execution plan as the shard sees it.
	Plan ExecutionPlan
}

// ExecutionPlan describes an execution (RG.GETEXECUTION).
type ExecutionPlan struct {
	// Status is the execution's status (see ExecutionInfo.Status).
	Status string
	// ShardsReceived counts the shards that received the execution.
	ShardsReceived int64
	// ShardsCompleted counts the shards that completed it.
	ShardsCompleted int64
	// Results counts the result records; -1 while running.
	Results int64
	// Errors are the error texts (empty while running).
	Errors []string
	// TotalDurationMS is the execution's duration.
	TotalDurationMS int64
	// ReadDurationMS is the reader's share of it.
	ReadDurationMS int64
	// Steps are the plan's steps.
	Steps []ExecutionStep
}

// ExecutionStep is one step of an ExecutionPlan.
type ExecutionStep struct {
	// Type is the step type: map, filter, reader, flatmap, accumulate, …
	Type string
	// DurationMS is the step's duration (0 unless ProfileExecutions is 1).
	DurationMS int64
	// Name is the callback's name.
	Name string
	// Arg is the step's argument as a string.
	Arg string
}

// PyExecute runs a Python script on the server (RG.PYEXECUTE). opts may be nil.
func (c *Client) PyExecute(ctx context.Context, script string, opts *PyExecuteOptions) (*PyExecuteReply, error) {
	return pyExecute(ctx, c.rdb, script, opts).Result()
}

// PyExecute queues RG.PYEXECUTE.
func (p *Pipeline) PyExecute(ctx context.Context, script string, opts *PyExecuteOptions) *Cmd[*PyExecuteReply] {
	return pyExecute(ctx, p.pipe, script, opts)
}

func pyExecute(ctx context.Context, d doer, script string, opts *PyExecuteOptions) *Cmd[*PyExecuteReply] {
	return newCmd(ctx, d, decodePyExecute, opts.args(script)...)
}

// decodePyExecute tells the reply shapes apart: "OK" (status), an execution id (bulk string of an
// UNBLOCKING run), [[results], [errors]] of a blocking run, or — when registrations failed on some
// shards — an array of error elements, which becomes the error.
func decodePyExecute(v any) (*PyExecuteReply, error) {
	switch x := v.(type) {
	case string:
		if x == "OK" {
			return &PyExecuteReply{}, nil
		}
		if isExecutionID(x) {
			return &PyExecuteReply{ExecutionID: x}, nil
		}
		return nil, decodeErr("PyExecuteReply", v, "expected OK or an execution id")
	case []any:
		if len(x) > 0 {
			if err := asError(x[0]); err != nil {
				return nil, err
			}
		}
		r, err := decodeExecResult(v)
		if err != nil {
			return nil, err
		}
		return &PyExecuteReply{Result: r}, nil
	}
	return nil, decodeErr("PyExecuteReply", v, "expected OK, an execution id or [results, errors]")
}

// isExecutionID reports whether s looks like "<40 chars>-<digits>".
func isExecutionID(s string) bool {
	if len(s) < 42 || s[40] != '-' {
		return false
	}
	for _, c := range s[41:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// decodeExecResult reads [[results…], [errors…]].
func decodeExecResult(v any) (*ExecResult, error) {
	a, err := asArray("ExecResult", v)
	if err != nil {
		return nil, err
	}
	if len(a) != 2 {
		return nil, decodeErr("ExecResult", v, "expected [results, errors], got %d elements", len(a))
	}
	res, err := asArray("ExecResult.Results", a[0])
	if err != nil {
		return nil, err
	}
	errs, err := asArray("ExecResult.Errors", a[1])
	if err != nil {
		return nil, err
	}
	out := &ExecResult{Results: res, Errors: make([]string, 0, len(errs))}
	for _, e := range errs {
		if ge := asError(e); ge != nil {
			out.Errors = append(out.Errors, ge.(*Error).Msg)
			continue
		}
		s, err := asString("ExecResult.Errors", e)
		if err != nil {
			return nil, err
		}
		out.Errors = append(out.Errors, s)
	}
	return out, nil
}

// Trigger calls a CommandReader registration (RG.TRIGGER) and returns its result records. A failed
// execution is an error (its first error text); an unknown trigger matches ErrUnknownTrigger.
func (c *Client) Trigger(ctx context.Context, trigger string, args ...any) ([]any, error) {
	return triggerCmd(ctx, c.rdb, "RG.TRIGGER", trigger, args).Result()
}

// Trigger queues RG.TRIGGER.
func (p *Pipeline) Trigger(ctx context.Context, trigger string, args ...any) *Cmd[[]any] {
	return triggerCmd(ctx, p.pipe, "RG.TRIGGER", trigger, args)
}

// TriggerOnKey calls a CommandReader registration with RG.TRIGGERONKEY (1.2), which a Redis Cluster
// routes to the shard owning key; the function sees key as its first argument.
func (c *Client) TriggerOnKey(ctx context.Context, trigger, key string, args ...any) ([]any, error) {
	return triggerCmd(ctx, c.rdb, "RG.TRIGGERONKEY", trigger, append([]any{key}, args...)).Result()
}

// TriggerOnKey queues RG.TRIGGERONKEY.
func (p *Pipeline) TriggerOnKey(ctx context.Context, trigger, key string, args ...any) *Cmd[[]any] {
	return triggerCmd(ctx, p.pipe, "RG.TRIGGERONKEY", trigger, append([]any{key}, args...))
}

func triggerCmd(ctx context.Context, d doer, cmd, trigger string, args []any) *Cmd[[]any] {
	all := make([]any, 0, 2+len(args))
	all = append(all, cmd, trigger)
	all = append(all, args...)
	if cmd == "RG.TRIGGERONKEY" {
		return newKeyedCmd(ctx, d, decodeRecords, 2, all...)
	}
	return newCmd(ctx, d, decodeRecords, all...)
}

// decodeRecords reads a trigger's reply: the array of result records.
func decodeRecords(v any) ([]any, error) {
	return asArray("records", v)
}

// DumpExecutions lists the executions of the shard (RG.DUMPEXECUTIONS).
func (c *Client) DumpExecutions(ctx context.Context) ([]ExecutionInfo, error) {
	return newCmd(ctx, c.rdb, decodeExecutions, "RG.DUMPEXECUTIONS").Result()
}

// DumpExecutions queues RG.DUMPEXECUTIONS.
func (p *Pipeline) DumpExecutions(ctx context.Context) *Cmd[[]ExecutionInfo] {
	return newCmd(ctx, p.pipe, decodeExecutions, "RG.DUMPEXECUTIONS")
}

func decodeExecutions(v any) ([]ExecutionInfo, error) {
	a, err := asArray("[]ExecutionInfo", v)
	if err != nil {
		return nil, err
	}
	out := make([]ExecutionInfo, 0, len(a))
	for _, e := range a {
		var info ExecutionInfo
		err := fields("ExecutionInfo", e, func(name string, val any) error {
			var err error
			switch name {
			case "executionId":
				info.ExecutionID, err = asString("ExecutionInfo.ExecutionID", val)
			case "status":
				info.Status, err = asString("ExecutionInfo.Status", val)
			case "registered", "registered execution":
				info.Registered, err = asBool("ExecutionInfo.Registered", val)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// GetExecution describes an execution (RG.GETEXECUTION), one entry per shard.
func (c *Client) GetExecution(ctx context.Context, id string, scope ExecutionScope) ([]ShardExecution, error) {
	return getExecution(ctx, c.rdb, id, scope).Result()
}

// GetExecution queues RG.GETEXECUTION.
func (p *Pipeline) GetExecution(ctx context.Context, id string, scope ExecutionScope) *Cmd[[]ShardExecution] {
	return getExecution(ctx, p.pipe, id, scope)
}

func getExecution(ctx context.Context, d doer, id string, scope ExecutionScope) *Cmd[[]ShardExecution] {
	if scope == ScopeDefault {
		return newCmd(ctx, d, decodeShardExecutions, "RG.GETEXECUTION", id)
	}
	return newCmd(ctx, d, decodeShardExecutions, "RG.GETEXECUTION", id, string(scope))
}

func decodeShardExecutions(v any) ([]ShardExecution, error) {
	a, err := asArray("[]ShardExecution", v)
	if err != nil {
		return nil, err
	}
	out := make([]ShardExecution, 0, len(a))
	for _, e := range a {
		var se ShardExecution
		err := fields("ShardExecution", e, func(name string, val any) error {
			var err error
			switch name {
			case "shard_id":
				se.ShardID, err = asString("ShardExecution.ShardID", val)
			case "execution_plan":
				se.Plan, err = decodeExecutionPlan(val)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, se)
	}
	return out, nil
}

func decodeExecutionPlan(v any) (ExecutionPlan, error) {
	var p ExecutionPlan
	err := fields("ExecutionPlan", v, func(name string, val any) error {
		var err error
		switch name {
		case "status":
			p.Status, err = asString("ExecutionPlan.Status", val)
		case "shards_received":
			p.ShardsReceived, err = asInt("ExecutionPlan.ShardsReceived", val)
		case "shards_completed":
			p.ShardsCompleted, err = asInt("ExecutionPlan.ShardsCompleted", val)
		case "results":
			p.Results, err = asInt("ExecutionPlan.Results", val)
		case "errors":
			p.Errors, err = errorTexts("ExecutionPlan.Errors", val)
		case "total_duration":
			p.TotalDurationMS, err = asInt("ExecutionPlan.TotalDurationMS", val)
		case "read_duration":
			p.ReadDurationMS, err = asInt("ExecutionPlan.ReadDurationMS", val)
		case "steps":
			p.Steps, err = decodeSteps(val)
		}
		return err
	})
	return p, err
}

// errorTexts reads an array of error texts (bulk strings or error elements).
func errorTexts(target string, v any) ([]string, error) {
	a, err := asArray(target, v)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(a))
	for _, e := range a {
		if ge, ok := e.(*Error); ok {
			out = append(out, ge.Msg)
			continue
		}
		s, err := asString(target, e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func decodeSteps(v any) ([]ExecutionStep, error) {
	a, err := asArray("[]ExecutionStep", v)
	if err != nil {
		return nil, err
	}
	out := make([]ExecutionStep, 0, len(a))
	for _, e := range a {
		var s ExecutionStep
		err := fields("ExecutionStep", e, func(name string, val any) error {
			var err error
			switch name {
			case "type":
				s.Type, err = asString("ExecutionStep.Type", val)
			case "duration":
				s.DurationMS, err = asInt("ExecutionStep.DurationMS", val)
			case "name":
				s.Name, err = asString("ExecutionStep.Name", val)
			case "arg":
				s.Arg, err = asString("ExecutionStep.Arg", val)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// GetResults returns a finished execution's results (RG.GETRESULTS); a running one matches
// ErrStillRunning, an unknown one ErrExecutionNotFound.
func (c *Client) GetResults(ctx context.Context, id string) (*ExecResult, error) {
	return newCmd(ctx, c.rdb, decodeExecResult, "RG.GETRESULTS", id).Result()
}

// GetResults queues RG.GETRESULTS.
func (p *Pipeline) GetResults(ctx context.Context, id string) *Cmd[*ExecResult] {
	return newCmd(ctx, p.pipe, decodeExecResult, "RG.GETRESULTS", id)
}

// GetResultsBlocking waits for an execution to finish and returns its results (RG.GETRESULTSBLOCKING).
// The server waits up to 1000 s; go-redis' ReadTimeout applies (see Client).
func (c *Client) GetResultsBlocking(ctx context.Context, id string) (*ExecResult, error) {
	return newCmd(ctx, c.rdb, decodeExecResult, "RG.GETRESULTSBLOCKING", id).Result()
}

// GetResultsBlocking queues RG.GETRESULTSBLOCKING.
func (p *Pipeline) GetResultsBlocking(ctx context.Context, id string) *Cmd[*ExecResult] {
	return newCmd(ctx, p.pipe, decodeExecResult, "RG.GETRESULTSBLOCKING", id)
}

// AbortExecution aborts an execution (RG.ABORTEXECUTION); a finished one is not an error.
func (c *Client) AbortExecution(ctx context.Context, id string) error {
	return newCmd(ctx, c.rdb, decodeOK, "RG.ABORTEXECUTION", id).Err()
}

// AbortExecution queues RG.ABORTEXECUTION.
func (p *Pipeline) AbortExecution(ctx context.Context, id string) *Cmd[string] {
	return newCmd(ctx, p.pipe, decodeOK, "RG.ABORTEXECUTION", id)
}

// DropExecution removes a finished execution (RG.DROPEXECUTION); a running one matches ErrNotFinished.
func (c *Client) DropExecution(ctx context.Context, id string) error {
	return newCmd(ctx, c.rdb, decodeOK, "RG.DROPEXECUTION", id).Err()
}

// DropExecution queues RG.DROPEXECUTION.
func (p *Pipeline) DropExecution(ctx context.Context, id string) *Cmd[string] {
	return newCmd(ctx, p.pipe, decodeOK, "RG.DROPEXECUTION", id)
}
