package gearstest_test

import (
	"fmt"
	"testing"
)

// TestConfigGetSeesOnlyExtraConfig checks that configGet() inside a function reads only the extra
// configuration dictionary, as RedisGears 1.2 does (configGet → GearsConfig_GetExtraConfigVals):
// built-in settings are None there, while RG.CONFIGGET through execute() answers them.
func TestConfigGetSeesOnlyExtraConfig(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		for _, builtin := range []string{"MaxExecutions", "ExecutionMaxIdleTime", "PythonAttemptTraceback"} {
			c.expect(L(L("None"), L()), "RG.PYEXECUTE",
				fmt.Sprintf("GB('ShardsIDReader').map(lambda x: configGet(%s)).run()", pyQuote(builtin)))
			c.expect(L(L("d"), L()), "RG.PYEXECUTE",
				fmt.Sprintf("GB('ShardsIDReader').map(lambda x: gearsConfigGet(%s, 'd')).run()", pyQuote(builtin)))
		}
		// RG.CONFIGGET reached through execute(), with the reply types of the command.
		c.expect(L(L("[5000]"), L()), "RG.PYEXECUTE",
			"GB('ShardsIDReader').map(lambda x: execute('RG.CONFIGGET', 'ExecutionMaxIdleTime')).run()")
		key := uniq(t, "cfg")
		c.expect(L("OK - value was saved in extra config dictionary"), "RG.CONFIGSET", key, "v1")
		c.expect(L(L("['v1']"), L()), "RG.PYEXECUTE",
			fmt.Sprintf("GB('ShardsIDReader').map(lambda x: execute('RG.CONFIGGET', %s)).run()", pyQuote(key)))
	})
}
