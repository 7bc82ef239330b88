package gears

import (
	"fmt"
	"strings"
	"time"
)

// FailPolicy is what a StreamReader registration does when its function fails.
type FailPolicy string

// StreamReader failure policies (register(onFailedPolicy=…)).
const (
	// FailContinue goes on with the next batch (RedisGears' default).
	FailContinue FailPolicy = "continue"
	// FailAbort stops the registration.
	FailAbort FailPolicy = "abort"
	// FailRetry retries the batch after the retry interval (WithRetryInterval).
	FailRetry FailPolicy = "retry"
)

// WithConvertToStr sets whether RedisGears turns every result record into str (run and register's
// convertToStr; RedisGears' default is true).
func WithConvertToStr(v bool) Option { return func(o *commandOptions) { o.convertToStr = &v } }

// WithNoScan makes a KeysReader run read the pattern as one key name instead of scanning.
func WithNoScan() Option { return func(o *commandOptions) { o.noScan = true } }

// WithReadValue sets whether a KeysReader reads the values (default true); without them records hold
// only 'key' and 'event'.
func WithReadValue(v bool) Option { return func(o *commandOptions) { o.readValue = &v } }

// WithFromID makes a StreamReader run start after the entry id (default "0-0").
func WithFromID(id string) Option { return func(o *commandOptions) { o.fromID = id } }

// WithTrigger registers a CommandReader under a trigger name, called with RG.TRIGGER.
func WithTrigger(name string) Option { return func(o *commandOptions) { o.trigger = name } }

// WithHook registers a CommandReader as a hook of a Redis command (1.2): the function runs instead of
// the command and may call call_next(). keyPrefix, when not "", hooks only calls whose keys start with
// it.
func WithHook(command, keyPrefix string) Option {
	return func(o *commandOptions) { o.hook, o.keyPrefix = command, keyPrefix }
}

// WithEventTypes limits a KeysReader registration to these keyspace events (e.g. "set", "hset", "del").
func WithEventTypes(events ...string) Option {
	return func(o *commandOptions) {
		o.eventTypes = append([]string{}, events...)
		if len(events) == 0 {
			o.setErr(fmt.Errorf("gears: WithEventTypes needs at least one event"))
		}
	}
}

// keyTypes are the key types RG.DUMPREGISTRATIONS can render ('stream' and 'empty' are accepted by
// register() but crash a real RedisGears 1.2.13 when it renders them: gears-spec.md §2.4).
var keyTypes = map[string]bool{"string": true, "list": true, "hash": true, "set": true, "zset": true, "module": true}

// WithKeyTypes limits a KeysReader registration to keys of these types: string, list, hash, set, zset,
// module.
func WithKeyTypes(types ...string) Option {
	return func(o *commandOptions) {
		o.keyTypes = append([]string{}, types...)
		for _, t := range types {
			if !keyTypes[t] {
				o.setErr(fmt.Errorf("gears: WithKeyTypes: unknown key type %q (want string, list, hash, set, zset or module)", t))
			}
		}
		if len(types) == 0 {
			o.setErr(fmt.Errorf("gears: WithKeyTypes needs at least one type"))
		}
	}
}

// WithCommands makes a KeysReader registration run in the context of these commands, so that it can
// override their reply (override_reply).
func WithCommands(commands ...string) Option {
	return func(o *commandOptions) { o.commands = append([]string{}, commands...) }
}

// WithBatch sets how many stream entries a StreamReader registration handles per execution (default 1).
func WithBatch(n int) Option {
	return func(o *commandOptions) {
		o.batch = n
		if n < 1 {
			o.setErr(fmt.Errorf("gears: WithBatch(%d): at least 1", n))
		}
	}
}

// WithDuration makes a StreamReader registration run at the latest this long after the first entry
// of an unfinished batch (milliseconds on the server).
func WithDuration(d time.Duration) Option {
	return func(o *commandOptions) {
		o.duration = d
		if d < time.Millisecond {
			o.setErr(fmt.Errorf("gears: WithDuration(%v): at least 1ms", d))
		}
	}
}

// WithOnFailedPolicy sets what a StreamReader registration does when its function fails.
func WithOnFailedPolicy(p FailPolicy) Option {
	return func(o *commandOptions) {
		o.onFailedPolicy = p
		switch p {
		case FailContinue, FailAbort, FailRetry:
		default:
			o.setErr(fmt.Errorf("gears: unknown FailPolicy %q", string(p)))
		}
	}
}

// WithRetryInterval sets how long a FailRetry StreamReader registration waits before retrying (whole
// seconds on the server).
func WithRetryInterval(d time.Duration) Option {
	return func(o *commandOptions) {
		o.retryInterval = d
		if d < time.Second || d%time.Second != 0 {
			o.setErr(fmt.Errorf("gears: WithRetryInterval(%v): whole seconds, at least 1s", d))
		}
	}
}

// WithTrimStream sets whether a StreamReader registration trims the entries it processed (default true).
func WithTrimStream(v bool) Option { return func(o *commandOptions) { o.trimStream = &v } }

func (o *commandOptions) setErr(err error) {
	if o.optErr == nil {
		o.optErr = err
	}
}

// readerOptions says which reader and action each builder option applies to.
var readerOptions = []struct {
	name    string
	set     func(o *commandOptions) bool
	readers string // space-separated reader names
	actions string // "run", "register" or both
}{
	{"WithNoScan", func(o *commandOptions) bool { return o.noScan }, "KeysReader KeysOnlyReader", "run"},
	{"WithReadValue", func(o *commandOptions) bool { return o.readValue != nil }, "KeysReader", "run register"},
	{"WithFromID", func(o *commandOptions) bool { return o.fromID != "" }, "StreamReader", "run"},
	{"WithTrigger", func(o *commandOptions) bool { return o.trigger != "" }, "CommandReader", "register"},
	{"WithHook", func(o *commandOptions) bool { return o.hook != "" }, "CommandReader", "register"},
	{"WithEventTypes", func(o *commandOptions) bool { return o.eventTypes != nil }, "KeysReader", "register"},
	{"WithKeyTypes", func(o *commandOptions) bool { return o.keyTypes != nil }, "KeysReader", "register"},
	{"WithCommands", func(o *commandOptions) bool { return o.commands != nil }, "KeysReader", "register"},
	{"WithBatch", func(o *commandOptions) bool { return o.batch != 0 }, "StreamReader", "register"},
	{"WithDuration", func(o *commandOptions) bool { return o.duration != 0 }, "StreamReader", "register"},
	{"WithOnFailedPolicy", func(o *commandOptions) bool { return o.onFailedPolicy != "" }, "StreamReader", "register"},
	{"WithRetryInterval", func(o *commandOptions) bool { return o.retryInterval != 0 }, "StreamReader", "register"},
	{"WithTrimStream", func(o *commandOptions) bool { return o.trimStream != nil }, "StreamReader", "register"},
}

// checkFor reports an option's own error, or an option that does not apply to this reader and action.
func (o *commandOptions) checkFor(action, reader string) error {
	if o.optErr != nil {
		return o.optErr
	}
	for _, ro := range readerOptions {
		if !ro.set(o) {
			continue
		}
		if !strings.Contains(" "+ro.actions+" ", " "+action+" ") || !strings.Contains(" "+ro.readers+" ", " "+reader+" ") {
			return fmt.Errorf("gears: %s does not apply to a %s %s() (it applies to %s %s)", ro.name, reader, action,
				strings.ReplaceAll(ro.readers, " ", ", "), strings.ReplaceAll(ro.actions, " ", "/"))
		}
	}
	return nil
}
