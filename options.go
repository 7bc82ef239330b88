package gears

import (
	"fmt"
	"time"
)

// Mode is the execution mode of a CommandReader registration.
type Mode string

// Execution modes. Async is RedisGears' default: the execution runs on the server's thread pool and,
// in a cluster, on every shard — each shard calls the function and the reply holds one record per
// shard, which only []any, any or a WithDecoder function accept. AsyncLocal runs on the thread pool of
// the shard called only; prefer it in a cluster. Sync runs inline on Redis' main thread: fastest for
// short functions, but it blocks Redis while it runs.
const (
	Async      Mode = "async"
	AsyncLocal Mode = "async_local"
	Sync       Mode = "sync"
)

// ConflictPolicy says what Command does when its trigger or session already holds different code.
type ConflictPolicy int

// Conflict policies.
const (
	// Upgrade replaces the code registered under the Command's session with the current code, atomically
	// (RG.PYEXECUTE … UPGRADE). A trigger owned by another session is taken over only when that session
	// holds nothing but this trigger (REPLACE_WITH); otherwise the call fails with ErrTriggerRegistered.
	Upgrade ConflictPolicy = iota
	// Keep uses whatever is registered under the trigger.
	Keep
	// Fail returns an error matching ErrConflict.
	Fail
)

// String names the policy.
func (p ConflictPolicy) String() string {
	switch p {
	case Upgrade:
		return "Upgrade"
	case Keep:
		return "Keep"
	case Fail:
		return "Fail"
	}
	return fmt.Sprintf("ConflictPolicy(%d)", int(p))
}

// Option configures Command.
type Option func(*commandOptions)

// commandOptions are Command's settings; the zero value is the default.
type commandOptions struct {
	mode         Mode
	requirements []string
	description  string
	keyRouting   bool
	policy       ConflictPolicy
	decoder      any // func(any) (T, error), checked against Command's T
	sessionID    string
	version      uint64
	idempotent   bool
	lockTTL      time.Duration

	// Builder's run and register arguments (builder_options.go); nil/zero: RedisGears' default.
	convertToStr   *bool
	noScan         bool
	readValue      *bool
	fromID         string
	trigger        string
	hook           string
	keyPrefix      string
	eventTypes     []string
	keyTypes       []string
	commands       []string
	batch          int
	duration       time.Duration
	onFailedPolicy FailPolicy
	retryInterval  time.Duration
	trimStream     *bool
	optErr         error // an option's own argument error
}

// WithMode sets the registration's execution mode (default Async).
func WithMode(m Mode) Option {
	return func(o *commandOptions) { o.mode = m }
}

// WithRequirements adds pip requirements to the Script's own.
func WithRequirements(reqs ...string) Option {
	return func(o *commandOptions) { o.requirements = append(o.requirements, reqs...) }
}

// WithDescription sets the session's and the registration's description. The content hash Command uses
// to recognise its code is appended to it.
func WithDescription(desc string) Option {
	return func(o *commandOptions) { o.description = desc }
}

// WithKeyRouting calls the trigger with RG.TRIGGERONKEY (RedisGears 1.2) and the first argument as the
// key, so that a Redis Cluster client routes the call to the shard owning that key (from the client's
// first command on: the Func tells go-redis where the key is). The function still receives every
// argument, the key first, and runs on that shard, where it may execute() that key; with the default
// Async mode it would run on every shard, so key-routed functions usually want AsyncLocal or Sync.
func WithKeyRouting() Option {
	return func(o *commandOptions) { o.keyRouting = true }
}

// WithOnConflict sets what happens when the trigger already holds different code (default Upgrade).
func WithOnConflict(p ConflictPolicy) Option {
	return func(o *commandOptions) { o.policy = p }
}

// WithDecoder decodes replies with fn instead of the built-in conversions; T must be the Command's
// type parameter (a mismatch makes every call fail with an error saying so). fn receives what a
// Command[any] would return: the single record when the reply holds one, otherwise the []any of records
// (a reply without records, an aborted execution, is ErrAborted before fn is called).
// Records arrive as go-redis reads them: string, int64, []any; RESP3 adds float64 and bool.
func WithDecoder[T any](fn func(reply any) (T, error)) Option {
	return func(o *commandOptions) { o.decoder = fn }
}

// WithSessionID sets the session id instead of the one derived from the trigger ("gears_<trigger>").
// Letters, digits, '-' and '_' only.
func WithSessionID(id string) Option {
	return func(o *commandOptions) { o.sessionID = id }
}

// WithVersion declares the version of the code (a number that grows with every release that changes
// it). It is written into the session's description next to the content hash. With the Upgrade policy
// a process never replaces code of a higher version: in a rolling deploy, a process of the old release
// that starts (or re-registers) after the new release registered uses the new code instead of putting
// the old one back. Without versions, different code always replaces what is there, so the process that
// registers last wins. To roll back, deploy the old code with a higher version.
func WithVersion(v uint64) Option {
	return func(o *commandOptions) { o.version = v }
}

// WithIdempotent declares that calling the function twice with the same arguments is harmless. Such a
// Func retries a call that the server answered with no result at all — what RedisGears 1.2 replies to a
// queued async/async_local execution it dropped while the session was upgraded or unregistered with
// ABORTPENDING, or to an execution someone aborted — instead of returning ErrAborted. It checks the
// registration before each retry and retries at most maxLossRetries times; a function that ran and
// failed is never retried.
func WithIdempotent() Option {
	return func(o *commandOptions) { o.idempotent = true }
}

// WithLockTTL sets the time to live of the registration lock (default DefaultLockTTL): how long a
// process that crashed while registering keeps the others waiting. The holder renews it every TTL/3.
func WithLockTTL(d time.Duration) Option {
	return func(o *commandOptions) { o.lockTTL = d }
}
