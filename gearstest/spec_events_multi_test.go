package gearstest_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKeysRegisterEventsInsideExec: Redis notifies each command of an EXEC as it runs it, so the writes
// of a transaction fire KeysReader registrations like any other (gears-spec.md §2.4: events come from
// every write). A sync registration runs for each before EXEC replies.
func TestKeysRegisterEventsInsideExec(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		p, logKey := uniq(t, "tx")+":", uniq(t, "log")
		c.cleanupKeys(p+"h", p+"s", logKey)
		c.logEvents(p, logKey, "mode='sync'")
		got := c.multiExec(L("HSET", p+"h", "f", "v"), L("SET", p+"s", "x"), L("DEL", p+"h"))
		require.Equal(t, L(int64(1), "OK", int64(1)), got)
		c.expect(L("hset:"+p+"h", "set:"+p+"s", "del:"+p+"h"), "LRANGE", logKey, "0", "-1")
	})
}
