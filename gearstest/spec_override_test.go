package gearstest_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// KeysReader register(commands=[…]) and override_reply() (gears-spec §2.4, §2.5; keys_reader.c
// KeysReader_CommandHook and redisgears_python.c overrideReply in RedisGears v1.2.13).

// TestOverrideReplySync: a sync registration with commands= replaces the hooked command's reply, for
// each reply kind of §2.6; other commands and keys keep theirs.
func TestOverrideReplySync(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p := uniq(t, "ov") + ":"
		c.cleanupKeys(p+"h", p+"n", p+"e", p+"l", p+"s", p+"x")
		c.registerScript(uniq(t, "s"), fmt.Sprintf(`
def over(r):
    k = r['key']
    if k.endswith(':h'):
        override_reply('+REPLACED')
    elif k.endswith(':n'):
        override_reply(42)
    elif k.endswith(':e'):
        override_reply('-ERR refused by gear')
    elif k.endswith(':l'):
        override_reply(['a', 7, ['b']])
GB().foreach(over).register(prefix=%s, commands=['hset', 'incrby'], mode='sync')
`, pyQuote(p+"*")))
		c.expect("REPLACED", "HSET", p+"h", "f", "v")
		c.expect("v", "HGET", p+"h", "f") // the command itself ran
		c.expect(42, "INCRBY", p+"n", 5)
		c.expect("5", "GET", p+"n")
		c.expectErr("ERR refused by gear", "HSET", p+"e", "f", "v")
		c.expect(1, "HEXISTS", p+"e", "f")
		c.expect(L("a", 7, L("b")), "HSET", p+"l", "f", "v")
		// no override_reply: the command's own reply
		c.expect(1, "HSET", p+"s", "f", "v")
		// a command not in commands= runs no execution (and keeps its reply)
		c.expectOK("SET", p+"x", "1")
	})
}

// TestOverrideReplyAsync: with an async registration the client waits for the execution (the real
// server blocks it), and its override is the reply.
func TestOverrideReplyAsync(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p := uniq(t, "oa") + ":"
		c.cleanupKeys(p + "h")
		c.registerScript(uniq(t, "s"), fmt.Sprintf(
			"GB().foreach(lambda r: override_reply('got ' + r['key'])).register(prefix=%s, commands=['hset'])", pyQuote(p+"*")))
		c.expect("got "+p+"h", "HSET", p+"h", "f", "v")
	})
}

// TestOverrideReplyOutsideCommandCtx: override_reply() outside an execution of a commands=
// registration raises "Can not get command ctx", and the command keeps its reply.
func TestOverrideReplyOutsideCommandCtx(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.match(tracebackErr("gears.error: Can not get command ctx"), c.doErr("RG.PYEXECUTE", "override_reply(1)"), "script")
		p := uniq(t, "oc") + ":"
		c.cleanupKeys(p + "h")
		sess := c.registerScript(uniq(t, "s"), fmt.Sprintf(
			"GB().foreach(lambda r: override_reply(1)).register(prefix=%s, mode='sync')", pyQuote(p+"*")))
		c.expect(1, "HSET", p+"h", "f", "v")
		data := c.registration(sess.regs[0])[7].([]any)
		require.Equal(t, int64(1), field(t, data, "numFailures"))
		require.Contains(t, field(t, data, "lastError"), "Can not get command ctx")
	})
}

// TestOverrideVerifyErrors: commands= refuses commands Redis does not allow in scripts and, since a
// KeysReader always has a prefix, commands with movable keys (command_hook.c CommandHook_VerifyHook).
func TestOverrideVerifyErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		cases := map[string]string{
			"GB().register(commands=['hset', 'blpop'])": "Can not hook a command which are not allowed inside a script",
			"GB().register(commands=['MULTI'])":         "Can not hook a command which are not allowed inside a script",
			"GB().register(commands=['sort'])":          "Can not hook a command with moveable keys by key prefix",
			"GB().register(commands=['zunionstore'])":   "Can not hook a command with moveable keys by key prefix",
			"GB().register(commands=[1])":               "given command type is not string",
		}
		for script, want := range cases {
			c.match(tracebackErr("gears.error: "+want), c.doErr("RG.PYEXECUTE", script), script)
		}
	})
}
