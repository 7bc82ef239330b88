package gearstest_test

// Event registrations (gears-spec.md §1.3, §1.9, §2.2, §2.4, §8.1 and the goldens of
// ../shared/fidelity/events): KeysReader.register() and its options, the keyspace events of writes,
// StreamReader.register() with batches, trimming and pausing, CommandReader hooks, and delivery under load.

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// logEvents registers, in a new session, a sync KeysReader on prefix whose function appends
// "<event>:<key>" to the list logKey (outside the prefix) and returns the registration id.
func (c *client) logEvents(prefix, logKey, extra string) string {
	c.t.Helper()
	script := fmt.Sprintf("GB().foreach(lambda r: execute('RPUSH', %s, r['event'] + ':' + r['key'])).register(prefix=%s%s)",
		pyQuote(logKey), pyQuote(prefix+"*"), prefixComma(extra))
	sess := c.registerScript(uniq(c.t, "s"), script)
	require.Len(c.t, sess.regs, 1)
	return sess.regs[0]
}

func (c *client) cleanupKeys(keys ...string) {
	c.t.Cleanup(func() { c.Del(context.Background(), keys...) })
}

func TestKeysRegisterRecordAndRegistration(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, last := uniq(t, "doc")+":", uniq(t, "last")
		c.cleanupKeys(p+"1", p+"2", last)
		sid := uniq(t, "s")
		script := fmt.Sprintf("GB().foreach(lambda r: execute('SET', %s, r['event'] + ':' + r['key'][-1:] + ':' + str(r['value']) + ':' + r['type'])).register(prefix=%s, mode='sync')",
			pyQuote(last), pyQuote(p+"*"))
		sess := c.registerScript(sid, script)
		c.expectOK("SET", p+"1", "hello")
		c.expect("set:1:hello:string", "GET", last)
		c.expect(1, "HSET", p+"2", "a", "b")
		c.expect("hset:2:{'a': 'b'}:hash", "GET", last)
		c.expectOK("SET", uniq(t, "other"), "x")
		c.expect("hset:2:{'a': 'b'}:hash", "GET", last)
		entry := c.registration(sess.regs[0])
		require.NotNil(t, entry)
		c.match(L("id", sess.regs[0], "reader", "KeysReader", "desc", nil, "RegistrationData",
			L("mode", "sync", "numTriggered", 2, "numSuccess", 2, "numFailures", 0, "numAborted", 0,
				"lastRunDurationMS", nonNegInt, "totalRunDurationMS", nonNegInt, "avgRunDurationMS", anyDouble,
				"lastError", nil, "args", L("regex", p+"*", "eventTypes", nil, "keyTypes", nil, "hookCommands", nil)),
			"PD", pdString(sid, "", sess.regs), "ExecutionThreadPool", "DefaultPool"), entry, "registration")
	})
}

func TestKeysRegisterOptionsInRegistration(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p := uniq(t, "o") + ":"
		sess := c.registerScript(uniq(t, "s"), fmt.Sprintf(
			"GB().register(prefix=%s, eventTypes=['hset', 'SET'], keyTypes=['hash', 'string'], readValue=False, mode='async_local')", pyQuote(p)))
		data := c.registration(sess.regs[0])[7].([]any)
		require.Equal(t, "async_local", field(t, data, "mode"))
		c.match(L("regex", p, "eventTypes", L("hset", "SET"), "keyTypes", L("hash", "string"), "hookCommands", nil),
			field(t, data, "args"), "args")
		// commands= shows as hookCommands
		sess = c.registerScript(uniq(t, "s"), fmt.Sprintf("GB().register(prefix=%s, commands=['hset'], mode='sync')", pyQuote(p)))
		c.match(L("regex", p, "eventTypes", nil, "keyTypes", nil, "hookCommands", L("hset")),
			field(t, c.registration(sess.regs[0])[7].([]any), "args"), "args")
	})
}

func TestKeysRegisterFilters(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, logKey := uniq(t, "f")+":", uniq(t, "log")
		c.cleanupKeys(p+"s", p+"h", p+"l", p+"exact", logKey)
		c.logEvents(p, logKey, "mode='sync', eventTypes=['HSET', 'lpush'], keyTypes=['hash']")
		c.expectOK("SET", p+"s", "v")
		c.expect(1, "HSET", p+"h", "f", "v")
		c.expect(1, "LPUSH", p+"l", "x")
		c.expect(L("hset:"+p+"h"), "LRANGE", logKey, 0, -1)
		// A prefix without '*' matches its key exactly.
		logKey2 := uniq(t, "log2")
		c.cleanupKeys(logKey2)
		c.registerScript(uniq(t, "s"), fmt.Sprintf("GB().foreach(lambda r: execute('RPUSH', %s, r['key'])).register(prefix=%s, mode='sync')",
			pyQuote(logKey2), pyQuote(p+"exact")))
		c.expectOK("SET", p+"exact", "1")
		c.expectOK("SET", p+"exactly", "1")
		c.cleanupKeys(p + "exactly")
		c.expect(L(p+"exact"), "LRANGE", logKey2, 0, -1)
	})
}

func TestKeysRegisterReadValueFalse(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, last := uniq(t, "rv")+":", uniq(t, "last")
		c.cleanupKeys(p+"1", last)
		c.registerScript(uniq(t, "s"), fmt.Sprintf("GB().foreach(lambda r: execute('SET', %s, str(sorted(r.items())))).register(prefix=%s, readValue=False, mode='sync')",
			pyQuote(last), pyQuote(p+"*")))
		c.expectOK("SET", p+"1", "v")
		c.expect(fmt.Sprintf("[('event', 'set'), ('key', '%s1')]", p), "GET", last)
	})
}

// TestKeysRegisterEventNames checks the keyspace event names of common writes (Redis' own names:
// notifyKeyspaceEvent in t_string.c, t_list.c, t_hash.c, db.c, expire.c).
func TestKeysRegisterEventNames(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, logKey := uniq(t, "ev")+":", uniq(t, "log")
		c.cleanupKeys(p+"a", p+"b", p+"l", p+"h", p+"n", p+"e", p+"z", logKey)
		c.logEvents(p, logKey, "mode='sync'")
		c.expectOK("SET", p+"a", "1")
		c.expectOK("RENAME", p+"a", p+"b")
		c.expect(1, "DEL", p+"b", p+"nothere")
		c.expect(1, "LPUSH", p+"l", "x")
		c.expect("x", "LPOP", p+"l")
		c.expect(1, "HSET", p+"h", "f", "v")
		c.expect(1, "HDEL", p+"h", "f")
		c.expect(2, "INCRBY", p+"n", 2)
		c.expect(1, "ZADD", p+"z", 1, "m")
		c.expect(L("set:"+p+"a", "rename_from:"+p+"a", "rename_to:"+p+"b", "del:"+p+"b",
			"lpush:"+p+"l", "lpop:"+p+"l", "del:"+p+"l", "hset:"+p+"h", "hdel:"+p+"h", "del:"+p+"h",
			"incrby:"+p+"n", "zadd:"+p+"z"), "LRANGE", logKey, 0, -1)
		// A key with a TTL: set, expire, and later expired.
		c.do("DEL", logKey)
		c.expectOK("SET", p+"e", "v", "PX", 50)
		waitFor(t, 30*time.Second, "the expired event", func() bool {
			return c.LLen(context.Background(), logKey).Val() >= 3
		})
		c.expect(L("set:"+p+"e", "expire:"+p+"e", "expired:"+p+"e"), "LRANGE", logKey, 0, -1)
	})
}

// TestKeysRegisterSyncOwnWritesDoNotRetrigger: in sync mode a function's own writes under its own
// prefix do not trigger it again (gears-spec 8.1).
func TestKeysRegisterSyncOwnWritesDoNotRetrigger(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, counter := uniq(t, "own")+":", uniq(t, "n")
		c.cleanupKeys(p+"1", p+"1:copy", counter)
		c.registerScript(uniq(t, "s"), fmt.Sprintf(
			"GB().foreach(lambda r: [execute('INCR', %s), execute('SET', r['key'] + ':copy', 'x')]).register(prefix=%s, mode='sync')",
			pyQuote(counter), pyQuote(p+"*")))
		c.expectOK("SET", p+"1", "v")
		c.expect("1", "GET", counter)
		c.expect("x", "GET", p+"1:copy")
	})
}

// TestKeysRegisterAsyncAndExecuteWrites: an async registration runs after the write; writes made by
// execute() inside another function trigger registrations too.
func TestKeysRegisterAsyncAndExecuteWrites(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, counter, syncCounter := uniq(t, "as")+":", uniq(t, "n"), uniq(t, "m")
		c.cleanupKeys(p+"1", p+"2", counter, syncCounter)
		c.registerScript(uniq(t, "s"), fmt.Sprintf("GB().foreach(lambda r: execute('INCR', %s)).register(prefix=%s)",
			pyQuote(counter), pyQuote(p+"*")))
		c.registerScript(uniq(t, "s"), fmt.Sprintf("GB().foreach(lambda r: execute('INCR', %s)).register(prefix=%s, mode='sync')",
			pyQuote(syncCounter), pyQuote(p+"*")))
		c.expectOK("SET", p+"1", "v")
		c.expect("1", "GET", syncCounter)
		waitFor(t, 30*time.Second, "the async run", func() bool { return c.Get(context.Background(), counter).Val() == "1" })
		trig := c.regTrigger(fmt.Sprintf(".map(lambda x: execute('SET', %s, 'w'))", pyQuote(p+"2")), "mode='sync'")
		c.expect(L("OK"), "RG.TRIGGER", trig)
		c.expect("2", "GET", syncCounter)
		waitFor(t, 30*time.Second, "the async run", func() bool { return c.Get(context.Background(), counter).Val() == "2" })
	})
}

func TestEventRegisterArgumentErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		cases := map[string]string{
			"GB().register(prefix=1)":                                          "regex argument must be a string",
			"GB().register(eventTypes=1)":                                      "given eventTypes is not iterable",
			"GB().register(eventTypes=[1])":                                    "given event type is not string",
			"GB().register(keyTypes=1)":                                        "given keyTypes is not iterable",
			"GB().register(keyTypes=['nope'])":                                 "unknown key type",
			"GB().register(readValue=1)":                                       "readValue is not boolean",
			"GB().register(commands=1)":                                        "given commands is not iterable",
			"GB('StreamReader').register(batch='x')":                           "batch argument must be a number",
			"GB('StreamReader').register(duration='x')":                        "duration argument must be a number",
			"GB('StreamReader').register(onFailedPolicy='x')":                  "onFailedPolicy must be Continue/Abort/Retry",
			"GB('StreamReader').register(onFailedPolicy=1)":                    "onFailedPolicy must be a string (Continue/Abort/Retry)",
			"GB('StreamReader').register(onFailedRetryInterval='x')":           "retryInterval argument must be a number",
			"GB('StreamReader').register(trimStream=1)":                        "pyTrimmStream argument must be a boolean",
			"GB('StreamReader').register(mode='sync', onFailedPolicy='abort')": "ExecutionMode sync can only be combined with OnFailedPolicy Continue",
			"GB('CommandReader').register(hook='incrby')":                      "Can not override a none sync registration",
		}
		for script, want := range cases {
			c.match(tracebackErr("gears.error: "+want), c.doErr("RG.PYEXECUTE", script), script)
		}
	})
}

func TestStreamRegisterBatchAndTrim(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, got := uniq(t, "in")+":", uniq(t, "got")
		c.cleanupKeys(p+"a", p+"b", got)
		sid := uniq(t, "s")
		sess := c.registerScript(sid, fmt.Sprintf(
			"GB('StreamReader').foreach(lambda r: execute('RPUSH', %s, r['key'][-1:] + '/' + r['id'] + '/' + r['value']['f'])).register(prefix=%s, batch=2)",
			pyQuote(got), pyQuote(p+"*")))
		c.expect("1-1", "XADD", p+"a", "1-1", "f", "x")
		c.expect("1-2", "XADD", p+"a", "1-2", "f", "y")
		waitFor(t, 30*time.Second, "the batch", func() bool { return c.LLen(context.Background(), got).Val() == 2 })
		c.expect(L("a/1-1/x", "a/1-2/y"), "LRANGE", got, 0, -1)
		// trimStream defaults to True: the processed entries are gone.
		waitFor(t, 30*time.Second, "the trim", func() bool { return c.XLen(context.Background(), p+"a").Val() == 0 })
		c.match(L("id", sess.regs[0], "reader", "StreamReader", "desc", nil, "RegistrationData",
			L("mode", "async", "numTriggered", 1, "numSuccess", 1, "numFailures", 0, "numAborted", 0,
				"lastRunDurationMS", nonNegInt, "totalRunDurationMS", nonNegInt, "avgRunDurationMS", anyDouble,
				"lastEstimatedLagMS", nonNegInt, "avgEstimatedLagMS", anyDouble, "lastError", nil,
				"args", L("batchSize", 2, "durationMS", 0, "stream", p+"*", "trimStream", 1, "onFailedPolicy", "continue", "retryInterval", 1),
				"status", "OK"),
			"PD", pdString(sid, "", sess.regs), "ExecutionThreadPool", "DefaultPool"), c.registration(sess.regs[0]), "registration")
	})
}

func TestStreamRegisterPauseAndUnpause(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, got, flag := uniq(t, "ps")+":", uniq(t, "got"), uniq(t, "flag")
		c.cleanupKeys(p+"a", got, flag)
		// The first run pauses the registration (flat_error('PAUSE…')); once unpaused, the entry is read again.
		fn := fmt.Sprintf("def f(r):\n    if execute('SETNX', %s, '1') == 1:\n        raise flat_error('PAUSE first')\n    execute('RPUSH', %s, r['id'])\n",
			pyQuote(flag), pyQuote(got))
		sess := c.registerScript(uniq(t, "s"), fn+fmt.Sprintf("GB('StreamReader').foreach(f).register(prefix=%s, trimStream=False)", pyQuote(p+"*")))
		status := func() any { return field(t, c.registration(sess.regs[0])[7].([]any), "status") }
		c.expect("1-1", "XADD", p+"a", "1-1", "f", "x")
		waitFor(t, 30*time.Second, "the pause", func() bool { return status() == "PAUSED" })
		require.Equal(t, "PAUSE first", field(t, c.registration(sess.regs[0])[7].([]any), "lastError"))
		c.expect(int64(0), "LLEN", got)
		c.expectOK("RG.UNPAUSEREGISTRATIONS", sess.regs[0])
		waitFor(t, 30*time.Second, "the run after unpause", func() bool { return c.LLen(context.Background(), got).Val() == 1 })
		c.expect(L("1-1"), "LRANGE", got, 0, -1)
		require.Equal(t, "OK", status())
		c.expectOK("RG.PAUSEREGISTRATIONS", sess.regs[0])
		require.Equal(t, "PAUSED", status())
		// KeysReader registrations cannot be paused.
		k := c.registerScript(uniq(t, "s"), fmt.Sprintf("GB().register(prefix=%s)", pyQuote(p+"k")))
		c.expectErr("Reader KeysReader does not support pause", "RG.PAUSEREGISTRATIONS", k.regs[0])
	})
}

func TestCommandHook(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p := uniq(t, "hk") + ":"
		n := p + "n"
		c.cleanupKeys(n, "x"+p+"other")
		// Only commands on keys under keyprefix are hooked; the hook's one result is the reply.
		sess := c.registerScript(uniq(t, "s"), fmt.Sprintf(
			"GB('CommandReader').map(lambda x: call_next(x[1], '2')).register(hook='incrby', keyprefix=%s, mode='sync')", pyQuote(p)))
		c.expect("2", "INCRBY", n, 5)
		c.expect("2", "GET", n)
		c.expect(3, "INCR", n) // not hooked
		c.expect(5, "INCRBY", "x"+p+"other", 5)
		c.expect(5, "INCRBY", uniq(t, "elsewhere"), 5)
		data := c.registration(sess.regs[0])[7].([]any)
		require.Equal(t, "incrby", field(t, data, "args").([]any)[1])
		require.Equal(t, int64(1), field(t, data, "numTriggered"))
	})
}

// TestEventsUnderLoad: 10,000 writes from 20 clients to matching keys run a sync registration exactly
// 10,000 times before the writes return, and an async one exactly 10,000 times once its queue drains;
// the server answers PING throughout.
func TestEventsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	c := newTarget(t).newClient(t, 3)
	const clients, perClient = 20, 500
	for _, mode := range []string{"sync", "async"} {
		t.Run(mode, func(t *testing.T) {
			c := &client{Client: c.Client, proto: c.proto, t: t}
			p, counter := uniq(t, "ld")+":", uniq(t, "n")
			c.registerScript(uniq(t, "s"), fmt.Sprintf("GB().foreach(lambda r: execute('INCR', %s)).register(prefix=%s, mode=%s)",
				pyQuote(counter), pyQuote(p+"*"), pyQuote(mode)))
			t.Cleanup(func() {
				c.Del(context.Background(), counter)
				for i := 0; i < clients*perClient; i += 500 {
					keys := make([]string, 0, 500)
					for j := i; j < i+500; j++ {
						keys = append(keys, p+strconv.Itoa(j))
					}
					c.Del(context.Background(), keys...)
				}
			})
			var stop atomic.Bool
			pingErrs := make(chan error, 1)
			pings := make(chan int, 1)
			go func() {
				n := 0
				for !stop.Load() {
					if err := c.Ping(context.Background()).Err(); err != nil {
						pingErrs <- err
						break
					}
					n++
				}
				pings <- n
			}()
			errs := make([]error, clients)
			parallelDo(clients, func(i int) {
				for j := 0; j < perClient; j++ {
					if err := c.Set(context.Background(), p+strconv.Itoa(i*perClient+j), "v", 0).Err(); err != nil {
						errs[i] = err
						return
					}
				}
			})
			for _, err := range errs {
				require.NoError(t, err)
			}
			want := strconv.Itoa(clients * perClient)
			if mode == "sync" {
				c.expect(want, "GET", counter)
			} else {
				waitFor(t, 5*time.Minute, "the async queue to drain", func() bool {
					return c.Get(context.Background(), counter).Val() == want
				})
			}
			stop.Store(true)
			require.Greater(t, <-pings, 0, "PING answered during the writes")
			select {
			case err := <-pingErrs:
				require.NoError(t, err)
			default:
			}
			// none doubled: the count stays
			c.expect(want, "GET", counter)
		})
	}
}
