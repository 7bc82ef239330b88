package gearstest_test

// Server-level commands (gears-spec.md §1.10, §1.13–§1.16, §8; golden cfg-builtin): RG.PYSTATS,
// RG.PYPROFILE errors, RG.CONFIGGET/RG.CONFIGSET, RG.INFOCLUSTER, RG.REFRESHCLUSTER, RG.DUMPPLUGINS,
// RG.PYFREEINTERPRETER.

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPyStats(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		want := L("TotalAllocated", nonNegInt, "PeakAllocated", nonNegInt, "CurrAllocated", nonNegInt)
		c.expect(want, "RG.PYSTATS")
		// Extra arguments are ignored (spec §8).
		c.expect(want, "RG.PYSTATS", "extra", "args")
	})
}

func TestPyProfileErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expectErr("ERR wrong number of arguments for 'rg.pyprofile' command", "rg.pyprofile")
		c.expectErr("Wrong subcommand given to RG.PYPROFILE", "RG.PYPROFILE", "FOO", "x")
		c.expectErr("session does not exists", "RG.PYPROFILE", "STATS", uniq(t, "nosuch"))
		c.expectErr("session does not exists", "RG.PYPROFILE", "RESET", uniq(t, "nosuch"))
		sid := uniq(t, "s")
		c.registerScript(sid, fmt.Sprintf("GB('CommandReader').register(trigger=%s)", pyQuote(uniq(t, "t"))))
		c.expectOK("RG.PYPROFILE", "RESET", sid)
	})
}

// restoreConfig puts a built-in config value back when the test ends (the suite may run on a shared server).
func restoreConfig(t *testing.T, c *client, key string) {
	old := c.do("RG.CONFIGGET", key).([]any)[0]
	t.Cleanup(func() { c.Do(context.Background(), "RG.CONFIGSET", key, fmt.Sprint(old)) })
}

func TestConfigGetBuiltinDefaults(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expect(L(1000, 100, 0, 3, 5000, 3), "RG.CONFIGGET",
			"MaxExecutions", "MaxExecutionsPerRegistration", "ProfileExecutions", "ExecutionThreads", "ExecutionMaxIdleTime", "SendMsgRetries")
		c.expect(L(1, 0, 0, 0, 1, 30000), "RG.CONFIGGET",
			"PythonAttemptTraceback", "CreateVenv", "DownloadDeps", "ForeceDownloadDepsOnEnterprise", "OverridePythonAllocators", "PythonInstallReqMaxIdleTime")
		// The installation's own values (spec §8: they differ between a docker image, a package and a
		// source build): only their shape is checked. Plugin is a non-empty list of absolute paths.
		absPath := regexp.MustCompile(`^/\S+$`)
		pluginList := matchFunc{"<list of absolute paths>", func(_ int, got any) error {
			arr, ok := got.([]any)
			if !ok || len(arr) == 0 {
				return fmt.Errorf("want a non-empty array, got %#v", got)
			}
			for _, e := range arr {
				if s, ok := e.(string); !ok || !absPath.MatchString(s) {
					return fmt.Errorf("element %#v is not an absolute path", e)
				}
			}
			return nil
		}}
		c.expect(L(pluginList, anyString, regexpMatch(`^(?i:[0-9a-f]{64})?$`), regexpMatch(`^/\S+$`)), "RG.CONFIGGET",
			"Plugin", "DependenciesUrl", "DependenciesSha256", "PythonInstallationDir")
		// Built-in names are case-sensitive for CONFIGGET; unknown keys are error elements.
		c.expect(L(errElem("(error) Unsupported config parameter: maxexecutions"), 1000), "RG.CONFIGGET", "maxexecutions", "MaxExecutions")
		c.expect(L(), "RG.CONFIGGET")
	})
}

func TestConfigSet(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		restoreConfig(t, c, "MaxExecutions")
		restoreConfig(t, c, "ExecutionMaxIdleTime")
		c.expect(L("OK"), "RG.CONFIGSET", "MaxExecutions", "1001")
		c.expect(L(1001), "RG.CONFIGGET", "MaxExecutions")
		// CONFIGSET matches names case-insensitively.
		c.expect(L("OK"), "RG.CONFIGSET", "maxexecutions", "1002")
		c.expect(L(1002), "RG.CONFIGGET", "MaxExecutions")
		c.expect(L(errElem("(error) Config value ExecutionThreads not modifiable at runtime")), "RG.CONFIGSET", "ExecutionThreads", "5")
		c.expect(L(errElem("(error) Failed setting config value ExecutionMaxIdleTime")), "RG.CONFIGSET", "ExecutionMaxIdleTime", "notanumber")
		c.expect(L(errElem("(error) Failed setting config value ExecutionMaxIdleTime")), "RG.CONFIGSET", "ExecutionMaxIdleTime", "0")
		c.expect(L(5000), "RG.CONFIGGET", "ExecutionMaxIdleTime")
		c.expect(L("OK", "OK"), "RG.CONFIGSET", "ExecutionMaxIdleTime", "6000", "MaxExecutions", "1000")
		c.expect(L(6000, 1000), "RG.CONFIGGET", "ExecutionMaxIdleTime", "MaxExecutions")
		c.expect(L(), "RG.CONFIGSET")
	})
}

func TestConfigExtraKeys(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		key := uniq(t, "cfg")
		c.expect(L(errElem("(error) Unsupported config parameter: "+key)), "RG.CONFIGGET", key)
		c.expect(L("OK - value was saved in extra config dictionary"), "RG.CONFIGSET", key, "val1")
		c.expect(L("val1"), "RG.CONFIGGET", key)
		c.expect(L("OK - value was saved in extra config dictionary"), "RG.CONFIGSET", key, "val2")
		c.expect(L("val2"), "RG.CONFIGGET", key)
		// A key without a value is an error element (spec §8).
		missing := uniq(t, "novalue")
		c.expect(L(errElem("(error) Value was not given to "+missing)), "RG.CONFIGSET", missing)
		// Extra config is visible to Python through configGet/gearsConfigGet.
		c.expect(L(L("val2"), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('ShardsIDReader').map(lambda x: configGet(%s)).run()", pyQuote(key)))
		c.expect(L(L("dflt"), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('ShardsIDReader').map(lambda x: gearsConfigGet(%s, 'dflt')).run()", pyQuote(missing)))
		c.expect(L(L("None"), L()), "RG.PYEXECUTE", fmt.Sprintf("GB('ShardsIDReader').map(lambda x: configGet(%s)).run()", pyQuote(missing)))
	})
}

func TestInfoClusterAndRefreshCluster(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expect("no cluster mode", "RG.INFOCLUSTER")
		c.expectOK("RG.REFRESHCLUSTER")
	})
}

func TestDumpPlugins(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		plugins := c.do("RG.DUMPPLUGINS").([]any)
		require.NotEmpty(t, plugins)
		for _, p := range plugins {
			c.match(L(anyString, anyInt), p, "plugin entry")
		}
	})
}

func TestPyFreeInterpreter(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		c.expect("Free interpreter is not longer supported", "RG.PYFREEINTERPRETER")
		c.expect("Free interpreter is not longer supported", "RG.PYFREEINTERPRETER", "any", "args")
	})
}
