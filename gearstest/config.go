package gearstest

import (
	"strconv"
	"strings"
	"sync"
)

// configEntry is one RG.CONFIGGET/RG.CONFIGSET key known to the server (src/config.c and the Python
// plugin's keys in redisgears_python.c).
type configEntry struct {
	name       string
	isInt      bool
	intVal     int64
	strVal     string
	list       []string // Plugin
	modifiable bool
	python     bool  // Python plugin key: "not configurable at runtime" instead of "not modifiable"
	minVal     int64 // smallest accepted value for ints
}

// config holds the built-in, Python and extra configuration.
type config struct {
	mu      sync.Mutex
	entries map[string]*configEntry // by exact name
	lower   map[string]*configEntry // by lower-cased name, for RG.CONFIGSET
	extra   map[string]string
}

func newConfig() *config {
	c := &config{entries: map[string]*configEntry{}, lower: map[string]*configEntry{}, extra: map[string]string{}}
	add := func(e configEntry) {
		e2 := e
		c.entries[e.name] = &e2
		c.lower[strings.ToLower(e.name)] = &e2
	}
	const anyInt = -1 << 62
	add(configEntry{name: "MaxExecutions", isInt: true, intVal: 1000, modifiable: true, minVal: anyInt})
	add(configEntry{name: "MaxExecutionsPerRegistration", isInt: true, intVal: 100, modifiable: true, minVal: anyInt})
	add(configEntry{name: "ProfileExecutions", isInt: true, intVal: 0, modifiable: true, minVal: anyInt})
	add(configEntry{name: "ExecutionThreads", isInt: true, intVal: 3, minVal: 1})
	add(configEntry{name: "ExecutionMaxIdleTime", isInt: true, intVal: 5000, modifiable: true, minVal: 1})
	add(configEntry{name: "SendMsgRetries", isInt: true, intVal: 3, modifiable: true, minVal: 0})
	add(configEntry{name: "Plugin", list: []string{"/var/opt/redislabs/modules/rg/plugin/gears_python.so"}})
	add(configEntry{name: "CreateVenv", isInt: true, python: true, minVal: anyInt})
	add(configEntry{name: "DownloadDeps", isInt: true, python: true, minVal: anyInt})
	add(configEntry{name: "ForeceDownloadDepsOnEnterprise", isInt: true, python: true, minVal: anyInt})
	add(configEntry{name: "PythonAttemptTraceback", isInt: true, intVal: 1, python: true, modifiable: true, minVal: anyInt})
	add(configEntry{name: "OverridePythonAllocators", isInt: true, intVal: 1, python: true, minVal: anyInt})
	add(configEntry{name: "PythonInstallReqMaxIdleTime", isInt: true, intVal: 30000, python: true, modifiable: true, minVal: 1})
	add(configEntry{name: "DependenciesUrl", python: true})
	add(configEntry{name: "DependenciesSha256", python: true})
	add(configEntry{name: "PythonInstallationDir", strVal: "/var/opt/redislabs/modules/rg", python: true})
	return c
}

func (e *configEntry) reply() value {
	switch {
	case e.list != nil:
		vs := make([]value, len(e.list))
		for i, s := range e.list {
			vs[i] = bulk(s)
		}
		return array(vs...)
	case e.isInt:
		return integer(e.intVal)
	}
	return bulk(e.strVal)
}

// get implements RG.CONFIGGET: built-in names are matched case-sensitively.
func (c *config) get(keys [][]byte) value {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]value, 0, len(keys))
	for _, k := range keys {
		key := string(k)
		if e, ok := c.entries[key]; ok {
			out = append(out, e.reply())
		} else if v, ok := c.extra[key]; ok {
			out = append(out, bulk(v))
		} else {
			out = append(out, errValue(msgConfigUnsupported(key)))
		}
	}
	return array(out...)
}

// set implements RG.CONFIGSET; it returns the reply and the changes to pass to the worker.
func (c *config) set(args [][]byte) (value, [][2]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []value
	var changed [][2]string
	for i := 0; i < len(args); i += 2 {
		key := string(args[i])
		if i+1 >= len(args) {
			out = append(out, errValue(msgConfigNoValue(key)))
			break
		}
		val := string(args[i+1])
		e, ok := c.lower[strings.ToLower(key)]
		if !ok {
			c.extra[key] = val
			changed = append(changed, [2]string{key, val})
			out = append(out, status("OK - value was saved in extra config dictionary"))
			continue
		}
		if !e.modifiable {
			if e.python {
				out = append(out, errValue(msgConfigNotRuntime(key)))
			} else {
				out = append(out, errValue(msgConfigNotModifiable(key)))
			}
			continue
		}
		if e.isInt {
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < e.minVal {
				out = append(out, errValue(msgConfigSetFailed(key)))
				continue
			}
			e.intVal = n
		} else {
			e.strVal = val
		}
		changed = append(changed, [2]string{e.name, val})
		out = append(out, status("OK"))
	}
	return array(out...), changed
}

// intValue returns a built-in integer setting.
func (c *config) intValue(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[name]; ok {
		return e.intVal
	}
	return 0
}

// getForPython answers configGet()/gearsConfigGet(): the value as a string, or nil. As in RedisGears
// 1.2 (redisgears_python.c configGet → GearsConfig_GetExtraConfigVals in src/config.c) only the extra
// configuration dictionary is consulted: built-in settings such as MaxExecutions are None there.
func (c *config) getForPython(name string) value {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.extra[name]; ok {
		return bulk(v)
	}
	return nilValue()
}

// pythonView is the configuration sent to the worker in `init`.
func (c *config) pythonView() map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]any{}
	for name, e := range c.entries {
		switch {
		case e.list != nil:
			m[name] = strings.Join(e.list, " ")
		case e.isInt:
			m[name] = e.intVal
		default:
			m[name] = e.strVal
		}
	}
	for k, v := range c.extra {
		m[k] = v
	}
	return m
}
