package gears

import "context"

// Registration is one entry of RG.DUMPREGISTRATIONS (and of RG.PYDUMPSESSIONS VERBOSE).
type Registration struct {
	// ID is the registration id, "<40-char shard id>-<counter>".
	ID string
	// Reader is "CommandReader", "KeysReader", "StreamReader" or "PythonReader".
	Reader string
	// Desc is the builder's desc (GB(desc=…)); "" when the server sent nil.
	Desc string
	// Data holds the reader's mode, counters and arguments.
	Data RegistrationData
	// PD is the session's private-data string as the server printed it; "" in VERBOSE session dumps.
	PD string
	// Session is PD parsed.
	Session PrivateData
	// ExecutionThreadPool is the pool the registration runs on ("DefaultPool"); "" on RedisGears 1.0.
	ExecutionThreadPool string
}

// RegistrationData is the reader-specific block of a registration. Fields a reader or server version
// does not send stay zero: 1.0 has no durations; only StreamReader has lag and Status.
type RegistrationData struct {
	// Mode is "async", "async_local" or "sync".
	Mode string
	// NumTriggered counts the executions started.
	NumTriggered int64
	// NumSuccess counts the executions that ended without error.
	NumSuccess int64
	// NumFailures counts the executions that ended with an error.
	NumFailures int64
	// NumAborted counts the aborted executions.
	NumAborted int64
	// LastRunDurationMS is the duration of the last execution (1.2).
	LastRunDurationMS int64
	// TotalRunDurationMS is the sum of all durations (1.2).
	TotalRunDurationMS int64
	// AvgRunDurationMS is the mean duration (1.2; a double on the wire).
	AvgRunDurationMS float64
	// LastEstimatedLagMS is the StreamReader's last lag (1.2).
	LastEstimatedLagMS int64
	// AvgEstimatedLagMS is the StreamReader's mean lag (1.2).
	AvgEstimatedLagMS float64
	// LastError is the last execution's error text, "" after a success.
	LastError string
	// Args are the reader's registration arguments.
	Args RegistrationArgs
	// Status is the StreamReader's state: "OK", "WAITING_FOR_RETRY_ON_FAILURE", "ABORTED", "PAUSED".
	Status string
}

// RegistrationArgs are a registration's reader arguments. Only the fields of the registration's reader
// are set; Raw holds every argument as sent.
type RegistrationArgs struct {
	// Trigger is the CommandReader's trigger (or hooked command).
	Trigger string
	// InOrder is the CommandReader's inorder flag (1.2).
	InOrder bool
	// Regex is the KeysReader's key prefix.
	Regex string
	// EventTypes is the KeysReader's event filter; nil means all.
	EventTypes []string
	// KeyTypes is the KeysReader's key-type filter; nil means all.
	KeyTypes []string
	// HookCommands are the KeysReader's hooked commands (1.2).
	HookCommands []string
	// BatchSize is the StreamReader's batch size.
	BatchSize int64
	// DurationMS is the StreamReader's batch duration.
	DurationMS int64
	// Stream is the StreamReader's stream prefix.
	Stream string
	// TrimStream is the StreamReader's trimStream flag (1.2).
	TrimStream bool
	// OnFailedPolicy is the StreamReader's "continue", "abort" or "retry" (1.2).
	OnFailedPolicy string
	// RetryInterval is the StreamReader's retry interval in seconds (1.2).
	RetryInterval int64
	// Raw maps every argument name to its value as received.
	Raw map[string]any
}

// PrivateData is a registration's PD string parsed: the Python session that owns it.
type PrivateData struct {
	// SessionName is the session id ('sessionName' in 1.2, 'sessionId' in 1.0).
	SessionName string
	// SessionDescription is the session's DESCRIPTION; "" when none ('null' on the wire).
	SessionDescription string
	// RefCount is the session's reference count.
	RefCount int64
	// LinkedTo is "primary", "temprary" (sic) or "None".
	LinkedTo string
	// Dead reports whether the session was replaced and awaits its last executions.
	Dead bool
	// IsInstallationNeeded reports whether the session has requirements to install.
	IsInstallationNeeded bool
	// Registrations lists the session's registration ids.
	Registrations []string
	// Deps lists the session's requirements.
	Deps []Dependency
}

// Dependency is one requirement in a PD string.
type Dependency struct {
	// Name is the requirement as given, e.g. "redis==4.3.1".
	Name string
	// BasePath is the directory the requirement is installed in.
	BasePath string
	// Wheels are the wheel files of the requirement.
	Wheels []string
}

// DumpRegistrations returns the registrations of the shard the command reaches (RG.DUMPREGISTRATIONS).
func (c *Client) DumpRegistrations(ctx context.Context) ([]Registration, error) {
	return dumpRegistrations(ctx, c.rdb).Result()
}

// DumpRegistrations queues RG.DUMPREGISTRATIONS.
func (p *Pipeline) DumpRegistrations(ctx context.Context) *Cmd[[]Registration] {
	return dumpRegistrations(ctx, p.pipe)
}

func dumpRegistrations(ctx context.Context, d doer) *Cmd[[]Registration] {
	return newCmd(ctx, d, decodeRegistrations, "RG.DUMPREGISTRATIONS")
}

// Unregister removes a registration (RG.UNREGISTER); abortPending also aborts its pending executions.
// An unknown id gives an error matching ErrNotRegistered.
func (c *Client) Unregister(ctx context.Context, id string, abortPending bool) error {
	return unregister(ctx, c.rdb, id, abortPending).Err()
}

// Unregister queues RG.UNREGISTER.
func (p *Pipeline) Unregister(ctx context.Context, id string, abortPending bool) *Cmd[string] {
	return unregister(ctx, p.pipe, id, abortPending)
}

func unregister(ctx context.Context, d doer, id string, abortPending bool) *Cmd[string] {
	if abortPending {
		return newCmd(ctx, d, decodeOK, "RG.UNREGISTER", id, "ABORTPENDING")
	}
	return newCmd(ctx, d, decodeOK, "RG.UNREGISTER", id)
}

// PauseRegistrations pauses a StreamReader registration (RG.PAUSEREGISTRATIONS, 1.2). The server takes
// exactly one id.
func (c *Client) PauseRegistrations(ctx context.Context, id string) error {
	return newCmd(ctx, c.rdb, decodeOK, "RG.PAUSEREGISTRATIONS", id).Err()
}

// PauseRegistrations queues RG.PAUSEREGISTRATIONS.
func (p *Pipeline) PauseRegistrations(ctx context.Context, id string) *Cmd[string] {
	return newCmd(ctx, p.pipe, decodeOK, "RG.PAUSEREGISTRATIONS", id)
}

// UnpauseRegistrations resumes a paused StreamReader registration (RG.UNPAUSEREGISTRATIONS, 1.2).
func (c *Client) UnpauseRegistrations(ctx context.Context, id string) error {
	return newCmd(ctx, c.rdb, decodeOK, "RG.UNPAUSEREGISTRATIONS", id).Err()
}

// UnpauseRegistrations queues RG.UNPAUSEREGISTRATIONS.
func (p *Pipeline) UnpauseRegistrations(ctx context.Context, id string) *Cmd[string] {
	return newCmd(ctx, p.pipe, decodeOK, "RG.UNPAUSEREGISTRATIONS", id)
}

// ClearRegistrationsStats resets every registration's counters, durations and lastError
// (RG.CLEARREGISTRATIONSSTATS, 1.2).
func (c *Client) ClearRegistrationsStats(ctx context.Context) error {
	return newCmd(ctx, c.rdb, decodeOK, "RG.CLEARREGISTRATIONSSTATS").Err()
}

// ClearRegistrationsStats queues RG.CLEARREGISTRATIONSSTATS.
func (p *Pipeline) ClearRegistrationsStats(ctx context.Context) *Cmd[string] {
	return newCmd(ctx, p.pipe, decodeOK, "RG.CLEARREGISTRATIONSSTATS")
}
