package gears

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBuilderPythonExact(t *testing.T) {
	b := KeysReader("user:*").Desc("users").
		Define("def age(r):\n    return int(r['value']['age'])\n").
		Filter("lambda r: r['type'] == 'hash'").
		Map("age").FlatMap("lambda a: [a, a]").Foreach("lambda a: None").Accumulate("lambda a, r: (a or 0) + r").
		LocalGroupBy("lambda r: r", "lambda k, a, r: (a or 0) + 1").GroupBy("lambda r: r", "lambda k, a, r: r").
		BatchGroupBy("lambda r: r", "lambda k, rs: len(rs)").Collect().Repartition("lambda r: str(r)").
		Limit(10, 2).Aggregate("0", "lambda a, r: a + 1", "lambda a, b: a + b").
		AggregateBy("lambda r: r", "[]", "lambda k, a, r: a + [r]", "lambda k, a, b: a + b").
		CountBy("").CountBy("lambda r: r['key']").Sort(true).Distinct().Avg("").Avg("float").Count()
	want := "def age(r):\n    return int(r['value']['age'])\n" +
		`GB("KeysReader", desc="users").filter(lambda r: r['type'] == 'hash').map(age).flatmap(lambda a: [a, a])` +
		`.foreach(lambda a: None).accumulate(lambda a, r: (a or 0) + r).localgroupby(lambda r: r, lambda k, a, r: (a or 0) + 1)` +
		`.groupby(lambda r: r, lambda k, a, r: r).batchgroupby(lambda r: r, lambda k, rs: len(rs)).collect()` +
		`.repartition(lambda r: str(r)).limit(10, 2).aggregate(0, lambda a, r: a + 1, lambda a, b: a + b)` +
		`.aggregateby(lambda r: r, [], lambda k, a, r: a + [r], lambda k, a, b: a + b).countby().countby(lambda r: r['key'])` +
		`.sort(reverse=True).distinct().avg().avg(float).count().run("user:*")` + "\n"
	assert.Equal(t, want, b.Python())
	python37(t, b.Python())

	script, err := b.runScript(&commandOptions{mode: AsyncLocal, convertToStr: new(false), noScan: true, readValue: new(false)})
	require.NoError(t, err)
	assert.Contains(t, script, `.run("user:*", mode='async_local', convertToStr=False, noScan=True, readValue=False)`)
	python37(t, script)
}

func TestBuilderRegisterScripts(t *testing.T) {
	cases := map[string]struct {
		b    *Builder
		opts []Option
		want string
	}{
		"keys": {KeysReader("user:").Foreach("lambda r: None"),
			[]Option{WithMode(Sync), WithEventTypes("hset", "del"), WithKeyTypes("hash"), WithReadValue(false), WithCommands("hset")},
			`.register(prefix="user:", mode='sync', eventTypes=["hset", "del"], keyTypes=["hash"], readValue=False, commands=["hset"])`},
		"stream": {StreamReader("events:").Map("lambda r: r['id']"),
			[]Option{WithBatch(100), WithDuration(50 * time.Millisecond), WithOnFailedPolicy(FailRetry), WithRetryInterval(2 * time.Second), WithTrimStream(false)},
			`.register(prefix="events:", batch=100, duration=50, onFailedPolicy="retry", onFailedRetryInterval=2, trimStream=False)`},
		"trigger": {CommandReader().Map("lambda x: x[1:]"), []Option{WithTrigger("echo"), WithConvertToStr(false)},
			`.register(trigger="echo", convertToStr=False)`},
		"hook": {CommandReader().Map("lambda x: call_next(*x[1:])"), []Option{WithHook("hset", "user:"), WithMode(Sync)},
			`.register(hook="hset", keyprefix="user:", mode='sync')`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var o commandOptions
			for _, opt := range c.opts {
				opt(&o)
			}
			script, err := c.b.registerScript(&o)
			require.NoError(t, err)
			assert.Contains(t, script, c.want)
			python37(t, script)
		})
	}
}

func TestBuilderArgumentErrors(t *testing.T) {
	run := func(b *Builder, opts ...Option) error {
		var o commandOptions
		for _, opt := range opts {
			opt(&o)
		}
		_, err := b.runScript(&o)
		return err
	}
	reg := func(b *Builder, opts ...Option) error {
		var o commandOptions
		for _, opt := range opts {
			opt(&o)
		}
		_, err := b.registerScript(&o)
		return err
	}
	cases := map[string]struct {
		err  error
		want string
	}{
		"empty callable":     {run(ShardsIDReader().Map("  ")), "gears: map needs a Python callable (a lambda or a function name)"},
		"error sticks":       {run(ShardsIDReader().Filter("").Map("str")), "gears: filter needs a Python callable (a lambda or a function name)"},
		"negative limit":     {run(ShardsIDReader().Limit(-1, 0)), "gears: Limit(-1, 0): count and offset must not be negative"},
		"no zero":            {run(ShardsIDReader().Aggregate("", "f", "g")), "gears: Aggregate needs the zero value as a Python expression"},
		"empty generator":    {run(PythonReader("")), "gears: PythonReader needs a Python callable (a lambda or a function name)"},
		"run sync":           {run(ShardsIDReader(), WithMode(Sync)), `gears: run() takes mode Async or AsyncLocal, not "sync"`},
		"run command reader": {run(CommandReader()), "gears: a CommandReader cannot run; Register it with WithTrigger or WithHook"},
		"option elsewhere":   {run(ShardsIDReader(), WithNoScan()), "gears: WithNoScan does not apply to a ShardsIDReader run() (it applies to KeysReader, KeysOnlyReader run)"},
		"batch on keys":      {reg(KeysReader("a"), WithBatch(10)), "gears: WithBatch does not apply to a KeysReader register() (it applies to StreamReader register)"},
		"bad batch":          {reg(StreamReader("s"), WithBatch(0)), "gears: WithBatch(0): at least 1"},
		"bad key type":       {reg(KeysReader("a"), WithKeyTypes("stream")), `gears: WithKeyTypes: unknown key type "stream" (want string, list, hash, set, zset or module)`},
		"bad policy":         {reg(StreamReader("s"), WithOnFailedPolicy("later")), `gears: unknown FailPolicy "later"`},
		"sync retry":         {reg(StreamReader("s"), WithMode(Sync), WithOnFailedPolicy(FailRetry)), "gears: a Sync StreamReader registration only takes FailContinue (RedisGears refuses the others)"},
		"interval":           {reg(StreamReader("s"), WithRetryInterval(1500*time.Millisecond)), "gears: WithRetryInterval(1.5s): whole seconds, at least 1s"},
		"no trigger":         {reg(CommandReader()), "gears: a CommandReader registration needs WithTrigger or WithHook"},
		"trigger and hook":   {reg(CommandReader(), WithTrigger("t"), WithHook("set", "")), "gears: a CommandReader takes WithTrigger or WithHook, not both"},
		"register shards":    {reg(ShardsIDReader()), "gears: a ShardsIDReader cannot be registered (only KeysReader, StreamReader and CommandReader)"},
		"bad mode":           {reg(KeysReader("a"), WithMode("fast")), `gears: unknown mode "fast" (want Async, AsyncLocal or Sync)`},
	}
	for name, c := range cases {
		assert.EqualError(t, c.err, c.want, name)
	}
	// A partial chain can be shared: methods return new Builders.
	base := ShardsIDReader().Map("str")
	a, b := base.Filter("lambda x: True"), base.Count()
	assert.NotEqual(t, a.Python(), b.Python())
	assert.Equal(t, `GB("ShardsIDReader").map(str).run()`+"\n", base.Python())
}
