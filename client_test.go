package gears_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/internal/testtarget"
)

const (
	zeroID = "0000000000000000000000000000000000000000"
	id1    = zeroID + "-1"
)

// --- decoding of canned replies: every shape of spec sections 1 and 6, under RESP2 and RESP3.

// onFake runs fn with a Client of a canned-reply server, under RESP2 and RESP3.
func onFake(t *testing.T, fn func(t *testing.T, f *fakeServer, c *gears.Client)) {
	for _, p := range protocols {
		t.Run(fmt.Sprintf("RESP%d", p), func(t *testing.T) {
			f := startFake(t)
			rdb := newRedis(f.addr, p)
			t.Cleanup(func() { _ = rdb.Close() })
			fn(t, f, gears.NewClient(rdb))
		})
	}
}

// A 1.2 CommandReader entry (12 elements, 20-element RegistrationData) as a real 1.2.13 sends it.
var cannedCommandReg12 = []any{
	"id", id1, "reader", "CommandReader", "desc", nil,
	"RegistrationData", []any{"mode", "sync", "numTriggered", 3, "numSuccess", 2, "numFailures", 1,
		"numAborted", 0, "lastRunDurationMS", 1, "totalRunDurationMS", 4, "avgRunDurationMS", rDouble(1.3333333333333333),
		"lastError", "['Traceback (most recent call last):\\n', '  File \"<string>\", line 3, in f\\n', 'Exception: bad arg a\\n']",
		"args", []any{"trigger", "t", "inorder", 0}},
	"PD", "{'sessionName':'s1', 'sessionDescription':'null', 'refCount': 1, 'linkedTo': primary, 'dead': false, 'isInstallationNeeded':0, 'registrationsList':['" + id1 + "'], 'depsList':[]}",
	"ExecutionThreadPool", "DefaultPool",
}

// A 1.2 StreamReader entry: 26-element RegistrationData with lag fields and status.
var cannedStreamReg12 = []any{
	"id", zeroID + "-4", "reader", "StreamReader", "desc", "my stream",
	"RegistrationData", []any{"mode", "async", "numTriggered", 5, "numSuccess", 5, "numFailures", 0,
		"numAborted", 0, "lastRunDurationMS", 2, "totalRunDurationMS", 10, "avgRunDurationMS", rDouble(2),
		"lastEstimatedLagMS", 7, "avgEstimatedLagMS", rDouble(6.5), "lastError", nil,
		"args", []any{"batchSize", 1, "durationMS", 0, "stream", "s*", "trimStream", 1, "onFailedPolicy", "continue", "retryInterval", 1},
		"status", "OK"},
	"PD", "{'sessionName':'ss', 'sessionDescription':'has, commas', 'refCount': 2, 'linkedTo': primary, 'dead': false, 'isInstallationNeeded':1, 'registrationsList':['" + zeroID + "-4','" + zeroID + "-5'], 'depsList':[{'name':'redis==4.3.1', 'basePath':'/var/opt/redislabs/modules/rg/python3_1.2.13/.venv-ab', 'wheels':['redis-4.3.1-py3-none-any.whl','async_timeout-4.0.2-py3-none-any.whl']}]}",
	"ExecutionThreadPool", "DefaultPool",
}

// A 1.0 KeysReader entry: 10 elements, 14-element RegistrationData, 1.0 PD.
var cannedKeysReg10 = []any{
	"id", zeroID + "-2", "reader", "KeysReader", "desc", nil,
	"RegistrationData", []any{"mode", "async", "numTriggered", 0, "numSuccess", 0, "numFailures", 0,
		"numAborted", 0, "lastError", nil, "args", []any{"regex", "*", "eventTypes", nil, "keyTypes", []any{"string"}}},
	"PD", "{'sessionId':'" + zeroID + "-3', 'depsList':[]}",
}

// A 1.0 CommandReader entry: args hold the trigger only.
var cannedCommandReg10 = []any{
	"id", zeroID + "-7", "reader", "CommandReader", "desc", "gears:x",
	"RegistrationData", []any{"mode", "async", "numTriggered", 1, "numSuccess", 1, "numFailures", 0,
		"numAborted", 0, "lastError", nil, "args", []any{"trigger", "old"}},
	"PD", "{'sessionId':'" + zeroID + "-8', 'depsList':[]}",
}

func TestDecodeDumpRegistrations(t *testing.T) {
	onFake(t, func(t *testing.T, f *fakeServer, c *gears.Client) {
		f.reply("RG.DUMPREGISTRATIONS", []any{cannedCommandReg12, cannedStreamReg12, cannedKeysReg10, cannedCommandReg10})
		regs, err := c.DumpRegistrations(context.Background())
		require.NoError(t, err)
		require.Len(t, regs, 4)

		assert.Equal(t, gears.Registration{
			ID: id1, Reader: "CommandReader",
			Data: gears.RegistrationData{Mode: "sync", NumTriggered: 3, NumSuccess: 2, NumFailures: 1,
				LastRunDurationMS: 1, TotalRunDurationMS: 4, AvgRunDurationMS: 1.3333333333333333,
				LastError: "['Traceback (most recent call last):\\n', '  File \"<string>\", line 3, in f\\n', 'Exception: bad arg a\\n']",
				Args:      gears.RegistrationArgs{Trigger: "t", Raw: map[string]any{"trigger": "t", "inorder": int64(0)}}},
			PD:                  cannedCommandReg12[9].(string),
			Session:             gears.PrivateData{SessionName: "s1", RefCount: 1, LinkedTo: "primary", Registrations: []string{id1}},
			ExecutionThreadPool: "DefaultPool",
		}, regs[0])

		s := regs[1]
		assert.Equal(t, "StreamReader", s.Reader)
		assert.Equal(t, "my stream", s.Desc)
		assert.Equal(t, int64(7), s.Data.LastEstimatedLagMS)
		assert.Equal(t, 6.5, s.Data.AvgEstimatedLagMS)
		assert.Equal(t, 2.0, s.Data.AvgRunDurationMS)
		assert.Equal(t, "OK", s.Data.Status)
		assert.Equal(t, gears.RegistrationArgs{BatchSize: 1, Stream: "s*", TrimStream: true, OnFailedPolicy: "continue",
			RetryInterval: 1, Raw: s.Data.Args.Raw}, s.Data.Args)
		assert.Equal(t, gears.PrivateData{SessionName: "ss", SessionDescription: "has, commas", RefCount: 2,
			LinkedTo: "primary", IsInstallationNeeded: true, Registrations: []string{zeroID + "-4", zeroID + "-5"},
			Deps: []gears.Dependency{{Name: "redis==4.3.1", BasePath: "/var/opt/redislabs/modules/rg/python3_1.2.13/.venv-ab",
				Wheels: []string{"redis-4.3.1-py3-none-any.whl", "async_timeout-4.0.2-py3-none-any.whl"}}}}, s.Session)

		k := regs[2]
		assert.Equal(t, "KeysReader", k.Reader)
		assert.Equal(t, "", k.ExecutionThreadPool, "1.0 entries have no pool")
		assert.Equal(t, "*", k.Data.Args.Regex)
		assert.Nil(t, k.Data.Args.EventTypes)
		assert.Equal(t, []string{"string"}, k.Data.Args.KeyTypes)
		assert.Equal(t, gears.PrivateData{SessionName: zeroID + "-3"}, k.Session)

		assert.Equal(t, "old", regs[3].Data.Args.Trigger)
		assert.Equal(t, int64(1), regs[3].Data.NumSuccess)
	})
}

func TestDecodePyDumpSessions(t *testing.T) {
	onFake(t, func(t *testing.T, f *fakeServer, c *gears.Client) {
		verboseReg := append([]any(nil), cannedCommandReg12[:8]...) // VERBOSE entries have no PD
		verboseReg = append(verboseReg, "ExecutionThreadPool", "DefaultPool")
		req := []any{"GearReqVersion", 1, "Name", "redis==4.3.1", "IsDownloaded", "yes", "IsInstalled", "yes",
			"CompiledOs", "linux-bullseye-x64", "Wheels", []any{"redis-4.3.1-py3-none-any.whl"}, "Path", "/tmp/venv",
			"RefCount", 1, "IsInReqDictionary", "yes"}
		f.handle("RG.PYDUMPSESSIONS", func(args []string) any {
			if len(args) > 0 && args[0] == "VERBOSE" {
				return []any{[]any{"ID", "s1", "sessionDescription", "d", "refCount", 1, "linked", "primary", "dead", "false",
					"requirementInstallationNeeded", 0, "requirements", []any{req}, "registrations", []any{verboseReg}}}
			}
			return []any{
				[]any{"ID", "s1", "sessionDescription", nil, "refCount", 1, "linked", "primary", "dead", "false",
					"requirementInstallationNeeded", 1, "requirements", []any{"redis==4.3.1"}, "registrations", []any{id1}},
				"Session nosuch does not exists",
			}
		})
		ss, err := c.PyDumpSessions(context.Background(), &gears.PyDumpSessionsOptions{Sessions: []string{"s1", "nosuch"}})
		require.NoError(t, err)
		assert.Equal(t, []gears.SessionInfo{
			{ID: "s1", RefCount: 1, Linked: "primary", RequirementInstallationNeeded: true,
				Requirements: []string{"redis==4.3.1"}, RegistrationIDs: []string{id1}},
			{ID: "nosuch", Missing: true},
		}, ss)
		assert.Equal(t, [][]string{{"SESSIONS", "s1", "nosuch"}}, f.received("RG.PYDUMPSESSIONS"))

		ss, err = c.PyDumpSessions(context.Background(), &gears.PyDumpSessionsOptions{Verbose: true, Dead: true})
		require.NoError(t, err)
		require.Len(t, ss, 1)
		assert.Equal(t, []string{"redis==4.3.1"}, ss[0].Requirements)
		assert.Equal(t, []gears.Requirement{{GearReqVersion: 1, Name: "redis==4.3.1", IsDownloaded: true, IsInstalled: true,
			CompiledOs: "linux-bullseye-x64", Wheels: []string{"redis-4.3.1-py3-none-any.whl"}, Path: "/tmp/venv",
			RefCount: 1, IsInReqDictionary: true}}, ss[0].RequirementDetails)
		assert.Equal(t, []string{id1}, ss[0].RegistrationIDs)
		require.Len(t, ss[0].Registrations, 1)
		assert.Equal(t, "t", ss[0].Registrations[0].Data.Args.Trigger)
		assert.Equal(t, "", ss[0].Registrations[0].PD)
		assert.Equal(t, []string{"VERBOSE", "DEAD"}, f.received("RG.PYDUMPSESSIONS")[1])
	})
}

func TestDecodePyDumpReqs(t *testing.T) {
	onFake(t, func(t *testing.T, f *fakeServer, c *gears.Client) {
		f.reply("RG.PYDUMPREQS", []any{
			[]any{"GearReqVersion", 1, "Name", "requests", "IsDownloaded", "no", "IsInstalled", "no",
				"CompiledOs", "linux", "Wheels", "Requirement was not yet downloaded so wheels are not available",
				"Path", "/p", "RefCount", 0, "IsInReqDictionary", "no"},
		})
		reqs, err := c.PyDumpReqs(context.Background())
		require.NoError(t, err)
		assert.Equal(t, []gears.Requirement{{GearReqVersion: 1, Name: "requests", CompiledOs: "linux",
			WheelsNote: "Requirement was not yet downloaded so wheels are not available", Path: "/p"}}, reqs)
	})
}

func TestDecodeExecutions(t *testing.T) {
	onFake(t, func(t *testing.T, f *fakeServer, c *gears.Client) {
		ctx := context.Background()
		f.reply("RG.DUMPEXECUTIONS", []any{[]any{"executionId", zeroID + "-0", "status", "done", "registered", 0},
			[]any{"executionId", zeroID + "-3", "status", "running", "registered", 1}})
		ex, err := c.DumpExecutions(ctx)
		require.NoError(t, err)
		assert.Equal(t, []gears.ExecutionInfo{{ExecutionID: zeroID + "-0", Status: "done"},
			{ExecutionID: zeroID + "-3", Status: "running", Registered: true}}, ex)

		f.reply("RG.GETEXECUTION", []any{[]any{"shard_id", zeroID, "execution_plan", []any{
			"status", "done", "shards_received", 0, "shards_completed", 0, "results", 1, "errors", []any{"boom"},
			"total_duration", 3, "read_duration", 1, "steps", []any{
				[]any{"type", "map", "duration", 0, "name", "<lambda>", "arg", ""},
				[]any{"type", "reader", "duration", 1, "name", "ShardIDReader", "arg", ""},
			}}}})
		plan, err := c.GetExecution(ctx, zeroID+"-0", gears.ScopeShard)
		require.NoError(t, err)
		assert.Equal(t, []gears.ShardExecution{{ShardID: zeroID, Plan: gears.ExecutionPlan{Status: "done", Results: 1,
			Errors: []string{"boom"}, TotalDurationMS: 3, ReadDurationMS: 1, Steps: []gears.ExecutionStep{
				{Type: "map", Name: "<lambda>"}, {Type: "reader", DurationMS: 1, Name: "ShardIDReader"}}}}}, plan)
		assert.Equal(t, [][]string{{zeroID + "-0", "SHARD"}}, f.received("RG.GETEXECUTION"))

		f.reply("RG.GETRESULTS", []any{[]any{"1", int64(2), []any{"a"}}, []any{"err1"}})
		res, err := c.GetResults(ctx, "x")
		require.NoError(t, err)
		assert.Equal(t, &gears.ExecResult{Results: []any{"1", int64(2), []any{"a"}}, Errors: []string{"err1"}}, res)

		f.reply("RG.GETRESULTSBLOCKING", rErr("execution plan does not exist"))
		_, err = c.GetResultsBlocking(ctx, "x")
		assert.ErrorIs(t, err, gears.ErrExecutionNotFound)

		f.reply("RG.DROPEXECUTION", rErr("can not drop a not yet finished execution, abort it first."))
		assert.ErrorIs(t, c.DropExecution(ctx, "x"), gears.ErrNotFinished)
		f.reply("RG.ABORTEXECUTION", rStatus("OK"))
		assert.NoError(t, c.AbortExecution(ctx, "x"))
	})
}

func TestDecodePyExecuteShapes(t *testing.T) {
	onFake(t, func(t *testing.T, f *fakeServer, c *gears.Client) {
		ctx := context.Background()
		f.reply("RG.PYEXECUTE", rStatus("OK"))
		r, err := c.PyExecute(ctx, "GB()", &gears.PyExecuteOptions{Unblocking: true, ID: "s", Description: "d",
			Upgrade: true, ReplaceWith: "o", ForceReinstall: true, Requirements: []string{"a==1", "b"}})
		require.NoError(t, err)
		assert.Equal(t, &gears.PyExecuteReply{}, r)
		assert.Equal(t, []string{"GB()", "UNBLOCKING", "ID", "s", "DESCRIPTION", "d", "UPGRADE", "REPLACE_WITH", "o",
			"FORCE_REINSTALL_REQUIREMENTS", "REQUIREMENTS", "a==1", "b"}, f.received("RG.PYEXECUTE")[0])

		f.reply("RG.PYEXECUTE", zeroID+"-4")
		r, err = c.PyExecute(ctx, "GB().run()", &gears.PyExecuteOptions{Unblocking: true})
		require.NoError(t, err)
		assert.Equal(t, &gears.PyExecuteReply{ExecutionID: zeroID + "-4"}, r)

		f.reply("RG.PYEXECUTE", []any{[]any{"1"}, []any{}})
		r, err = c.PyExecute(ctx, "GB('ShardsIDReader').count().run()", nil)
		require.NoError(t, err)
		assert.Equal(t, &gears.PyExecuteReply{Result: &gears.ExecResult{Results: []any{"1"}, Errors: []string{}}}, r)

		// Registration failures on cluster shards come back as an array of error elements.
		f.reply("RG.PYEXECUTE", []any{rErr("-ERR shard-abc: trigger already registered")})
		_, err = c.PyExecute(ctx, "x", nil)
		assert.ErrorIs(t, err, gears.ErrTriggerRegistered)
		var ge *gears.Error
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "-ERR shard-abc: trigger already registered", ge.Msg)
	})
}

func TestDecodeClusterConfigPlugins(t *testing.T) {
	onFake(t, func(t *testing.T, f *fakeServer, c *gears.Client) {
		ctx := context.Background()
		f.reply("RG.INFOCLUSTER", "no cluster mode")
		info, err := c.InfoCluster(ctx)
		require.NoError(t, err)
		assert.Equal(t, &gears.ClusterInfo{}, info)

		f.reply("RG.INFOCLUSTER", []any{"MyId", "aaa", "MyRunId", "rrr", []any{
			[]any{"id", "aaa", "ip", "127.0.0.1", "port", 30001, "unixSocket", "None", "runid", "rrr",
				"minHslot", 0, "maxHslot", 5460, "pendingMessages", 0},
			[]any{"id", "bbb", "ip", "127.0.0.1", "port", 30002, "unixSocket", "None", "runid", nil,
				"minHslot", 5461, "maxHslot", 10922, "pendingMessages", 2},
		}})
		info, err = c.InfoCluster(ctx)
		require.NoError(t, err)
		assert.Equal(t, &gears.ClusterInfo{Cluster: true, MyID: "aaa", MyRunID: "rrr", Nodes: []gears.ClusterNode{
			{ID: "aaa", IP: "127.0.0.1", Port: 30001, UnixSocket: "None", RunID: "rrr", MaxHslot: 5460},
			{ID: "bbb", IP: "127.0.0.1", Port: 30002, UnixSocket: "None", MinHslot: 5461, MaxHslot: 10922, PendingMessages: 2},
		}}, info)

		f.reply("RG.CONFIGGET", []any{int64(1000), "/var/opt", rErr("(error) Unsupported config parameter: x")})
		vals, err := c.ConfigGet(ctx, "MaxExecutions", "PythonInstallationDir", "x")
		require.NoError(t, err)
		require.Len(t, vals, 3)
		assert.Equal(t, gears.ConfigValue{Key: "MaxExecutions", Value: int64(1000)}, vals[0])
		assert.Equal(t, gears.ConfigValue{Key: "PythonInstallationDir", Value: "/var/opt"}, vals[1])
		assert.Equal(t, "x", vals[2].Key)
		assert.EqualError(t, vals[2].Err, "gears: (error) Unsupported config parameter: x")

		f.reply("RG.DUMPPLUGINS", []any{[]any{"GearsPythonPlugin", 10213}})
		plugins, err := c.DumpPlugins(ctx)
		require.NoError(t, err)
		assert.Equal(t, []gears.Plugin{{Name: "GearsPythonPlugin", Version: 10213}}, plugins)

		f.reply("RG.PYSTATS", []any{"TotalAllocated", 100, "PeakAllocated", 50, "CurrAllocated", 20})
		st, err := c.PyStats(ctx)
		require.NoError(t, err)
		assert.Equal(t, &gears.PyStats{TotalAllocated: 100, PeakAllocated: 50, CurrAllocated: 20}, st)
	})
}

func TestDecodeUnexpectedShapes(t *testing.T) {
	onFake(t, func(t *testing.T, f *fakeServer, c *gears.Client) {
		ctx := context.Background()
		f.reply("RG.DUMPREGISTRATIONS", "not an array")
		_, err := c.DumpRegistrations(ctx)
		require.ErrorIs(t, err, gears.ErrUnexpectedReply)
		var de *gears.DecodeError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, "[]Registration", de.Target)

		f.reply("RG.PYSTATS", []any{"TotalAllocated", "many", "PeakAllocated"})
		_, err = c.PyStats(ctx)
		require.ErrorIs(t, err, gears.ErrUnexpectedReply)

		f.reply("RG.PYSTATS", []any{"TotalAllocated", "many"})
		_, err = c.PyStats(ctx)
		require.ErrorIs(t, err, gears.ErrUnexpectedReply)
		assert.Contains(t, err.Error(), `PyStats field "TotalAllocated"`)

		f.reply("RG.UNREGISTER", rStatus("NOPE"))
		require.ErrorIs(t, c.Unregister(ctx, "x", false), gears.ErrUnexpectedReply)
	})
}

// --- the Client against the target server.

func TestClientTriggerAndRegistrations(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("echo")
		e.register(fmt.Sprintf("GB('CommandReader').register(trigger='%s', mode='sync')", trig), nil)

		recs, err := e.c.Trigger(e.ctx, trig, "foo", 7)
		require.NoError(t, err)
		assert.Equal(t, []any{fmt.Sprintf("['%s', 'foo', '7']", trig)}, recs)

		recs, err = e.c.TriggerOnKey(e.ctx, trig, "k1", "v")
		require.NoError(t, err)
		assert.Equal(t, []any{fmt.Sprintf("['%s', 'k1', 'v']", trig)}, recs)

		regs := e.registrationsOf(trig)
		require.Len(t, regs, 1)
		r := regs[0]
		assert.Equal(t, "CommandReader", r.Reader)
		assert.Equal(t, "", r.Desc)
		assert.Equal(t, "sync", r.Data.Mode)
		assert.Equal(t, int64(2), r.Data.NumTriggered)
		assert.Equal(t, int64(2), r.Data.NumSuccess)
		assert.Equal(t, int64(0), r.Data.NumFailures)
		assert.Equal(t, "", r.Data.LastError)
		assert.Equal(t, gears.RegistrationArgs{Trigger: trig, Raw: map[string]any{"trigger": trig, "inorder": int64(0)}}, r.Data.Args)
		assert.Equal(t, "DefaultPool", r.ExecutionThreadPool)
		assert.Equal(t, []string{r.ID}, r.Session.Registrations)
		assert.Equal(t, "primary", r.Session.LinkedTo)
		assert.Len(t, r.Session.SessionName, 40, "a session without ID gets 40 random hex chars")

		require.NoError(t, e.c.ClearRegistrationsStats(e.ctx))
		r = e.registrationsOf(trig)[0]
		assert.Equal(t, int64(0), r.Data.NumTriggered)

		require.NoError(t, e.c.Unregister(e.ctx, r.ID, false))
		_, err = e.c.Trigger(e.ctx, trig)
		assert.ErrorIs(t, err, gears.ErrUnknownTrigger)
		assert.ErrorIs(t, e.c.Unregister(e.ctx, r.ID, false), gears.ErrNotRegistered)
		assert.Empty(t, e.registrationsOf(trig))
	})
}

func TestClientTriggerErrors(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("fail")
		e.register(fmt.Sprintf(`def f(x):
    if len(x) > 1:
        raise ValueError('bad arg ' + x[1])
    return 'ok'
GB('CommandReader').map(f).register(trigger='%s', mode='sync')`, trig), nil)

		_, err := e.c.Trigger(e.ctx, trig, "a")
		var ge *gears.Error
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "ValueError: bad arg a", ge.Exception)
		assert.Equal(t, "ValueError", ge.ExceptionType)
		assert.Equal(t, "bad arg a", ge.ExceptionMessage)
		require.NotEmpty(t, ge.Frames)
		last := ge.Frames[len(ge.Frames)-1]
		assert.Equal(t, gears.Frame{File: "<string>", Line: 3, Func: "f"}, gears.Frame{File: last.File, Line: last.Line, Func: last.Func})
		assert.True(t, strings.HasPrefix(ge.Msg, "['Traceback (most recent call last):\\n', "), ge.Msg)

		r := e.registrationsOf(trig)[0]
		assert.Equal(t, ge.Msg, r.Data.LastError)
		assert.Equal(t, int64(1), r.Data.NumFailures)

		_, err = e.c.Trigger(e.ctx, e.name("nosuch"))
		assert.ErrorIs(t, err, gears.ErrUnknownTrigger)
		assert.EqualError(t, err, "gears: ERR subcommand not found")

		// A second registration of the same trigger by another session.
		_, err = e.c.PyExecute(e.ctx, fmt.Sprintf("GB('CommandReader').register(trigger='%s')", trig), nil)
		assert.ErrorIs(t, err, gears.ErrTriggerRegistered)
	})
}

func TestClientPyExecute(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		r, err := e.c.PyExecute(e.ctx, "GB('ShardsIDReader').count().run()", nil)
		require.NoError(t, err)
		assert.Equal(t, &gears.PyExecuteReply{Result: &gears.ExecResult{Results: []any{"1"}, Errors: []string{}}}, r)

		r, err = e.c.PyExecute(e.ctx, "GB('PythonReader').map(lambda x: 1/0).run(lambda: iter([1]))", nil)
		require.NoError(t, err)
		require.Len(t, r.Result.Errors, 1)
		assert.Contains(t, r.Result.Errors[0], "ZeroDivisionError")
		assert.Empty(t, r.Result.Results)

		r, err = e.c.PyExecute(e.ctx, "GB('ShardsIDReader').count().run()", &gears.PyExecuteOptions{Unblocking: true})
		require.NoError(t, err)
		require.NotEmpty(t, r.ExecutionID)
		res, err := e.c.GetResultsBlocking(e.ctx, r.ExecutionID)
		require.NoError(t, err)
		assert.Equal(t, &gears.ExecResult{Results: []any{"1"}, Errors: []string{}}, res)
		res, err = e.c.GetResults(e.ctx, r.ExecutionID)
		require.NoError(t, err)
		assert.Equal(t, []any{"1"}, res.Results)

		execs, err := e.c.DumpExecutions(e.ctx)
		require.NoError(t, err)
		found := false
		for _, x := range execs {
			if x.ExecutionID == r.ExecutionID {
				found = true
				assert.Equal(t, gears.ExecutionInfo{ExecutionID: r.ExecutionID, Status: "done"}, x)
			}
		}
		assert.True(t, found, "RG.DUMPEXECUTIONS lists %s", r.ExecutionID)

		plan, err := e.c.GetExecution(e.ctx, r.ExecutionID, gears.ScopeShard)
		require.NoError(t, err)
		require.Len(t, plan, 1)
		assert.Equal(t, "done", plan[0].Plan.Status)
		assert.Equal(t, int64(1), plan[0].Plan.Results)
		assert.Equal(t, []string{}, plan[0].Plan.Errors)
		assert.NotEmpty(t, plan[0].Plan.Steps)
		_, err = e.c.GetExecution(e.ctx, r.ExecutionID, "NOPE")
		assert.ErrorIs(t, err, gears.ErrUnknownSubcommand)

		require.NoError(t, e.c.AbortExecution(e.ctx, r.ExecutionID))
		require.NoError(t, e.c.DropExecution(e.ctx, r.ExecutionID))
		_, err = e.c.GetResults(e.ctx, r.ExecutionID)
		assert.ErrorIs(t, err, gears.ErrExecutionNotFound)
		assert.ErrorIs(t, e.c.DropExecution(e.ctx, r.ExecutionID), gears.ErrExecutionNotFound)

		_, err = e.c.PyExecute(e.ctx, "def f(:", nil)
		assert.ErrorIs(t, err, gears.ErrSyntax)
		var ge *gears.Error
		require.ErrorAs(t, err, &ge)
		assert.Equal(t, "SyntaxError", ge.ExceptionType)

		_, err = e.c.PyExecute(e.ctx, "GB('NoSuchReader').run()", nil)
		assert.ErrorIs(t, err, gears.ErrUnknownReader)
	})
}

func TestClientSessions(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		sid := e.name("sess")
		trig := e.name("t")
		script := fmt.Sprintf("GB('CommandReader').map(lambda x: 'v1').register(trigger='%s', mode='sync')", trig)
		e.register(script, &gears.PyExecuteOptions{ID: sid, Description: "first"})

		ss, err := e.c.PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Sessions: []string{sid, e.name("none")}})
		require.NoError(t, err)
		regID := e.registrationsOf(trig)[0].ID
		assert.Equal(t, []gears.SessionInfo{
			{ID: sid, Description: "first", RefCount: 1, Linked: "primary", RegistrationIDs: []string{regID}},
			{ID: e.name("none"), Missing: true},
		}, ss)

		_, err = e.c.PyExecute(e.ctx, script, &gears.PyExecuteOptions{ID: sid})
		assert.ErrorIs(t, err, gears.ErrSessionExists)

		v2 := fmt.Sprintf("GB('CommandReader').map(lambda x: 'v2').register(trigger='%s', mode='sync')", trig)
		e.register(v2, &gears.PyExecuteOptions{ID: sid, Upgrade: true})
		recs, err := e.c.Trigger(e.ctx, trig)
		require.NoError(t, err)
		assert.Equal(t, []any{"v2"}, recs)
		regs := e.registrationsOf(trig)
		require.Len(t, regs, 1)
		assert.NotEqual(t, regID, regs[0].ID)
		assert.Equal(t, sid, regs[0].Session.SessionName)

		ss, err = e.c.PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Verbose: true, Sessions: []string{sid}})
		require.NoError(t, err)
		require.Len(t, ss[0].Registrations, 1)
		assert.Equal(t, regs[0].ID, ss[0].Registrations[0].ID)
		assert.Equal(t, trig, ss[0].Registrations[0].Data.Args.Trigger)

		// REPLACE_WITH moves the registrations to a new session id.
		sid2 := e.name("sess2")
		e.register(v2, &gears.PyExecuteOptions{ID: sid2, ReplaceWith: sid})
		assert.Equal(t, sid2, e.registrationsOf(trig)[0].Session.SessionName)
		_, err = e.c.PyExecute(e.ctx, v2, &gears.PyExecuteOptions{ID: e.name("x"), ReplaceWith: e.name("gone")})
		assert.ErrorIs(t, err, gears.ErrSessionNotFound)

		_, err = e.c.PyProfile(e.ctx, gears.ProfileStats, e.name("gone"))
		assert.ErrorIs(t, err, gears.ErrSessionNotFound)
		ok, err := e.c.PyProfile(e.ctx, gears.ProfileReset, sid2)
		require.NoError(t, err)
		assert.Equal(t, "OK", ok)
	})
}

func TestClientAdmin(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		st, err := e.c.PyStats(e.ctx)
		require.NoError(t, err)
		assert.Positive(t, st.TotalAllocated)
		assert.Positive(t, st.PeakAllocated)

		info, err := e.c.InfoCluster(e.ctx)
		require.NoError(t, err)
		assert.Equal(t, &gears.ClusterInfo{}, info)
		require.NoError(t, e.c.RefreshCluster(e.ctx))

		plugins, err := e.c.DumpPlugins(e.ctx)
		require.NoError(t, err)
		require.NotEmpty(t, plugins)
		assert.NotEmpty(t, plugins[0].Name)

		key := e.name("cfg")
		set, err := e.c.ConfigSet(e.ctx, key, "v1", "ExecutionMaxIdleTime", "0")
		require.NoError(t, err)
		require.Len(t, set, 2)
		assert.Equal(t, gears.ConfigValue{Key: key, Value: "OK - value was saved in extra config dictionary"}, set[0])
		assert.Equal(t, "ExecutionMaxIdleTime", set[1].Key)
		assert.EqualError(t, set[1].Err, "gears: (error) Failed setting config value ExecutionMaxIdleTime")

		got, err := e.c.ConfigGet(e.ctx, key, "MaxExecutions", "maxexecutions")
		require.NoError(t, err)
		require.Len(t, got, 3)
		assert.Equal(t, gears.ConfigValue{Key: key, Value: "v1"}, got[0])
		assert.Equal(t, "MaxExecutions", got[1].Key)
		assert.IsType(t, int64(0), got[1].Value)
		assert.EqualError(t, got[2].Err, "gears: (error) Unsupported config parameter: maxexecutions")

		_, err = e.c.PyDumpReqs(e.ctx)
		require.NoError(t, err)

		// Pausing is for StreamReader registrations only.
		trig := e.name("p")
		e.register(fmt.Sprintf("GB('CommandReader').register(trigger='%s')", trig), nil)
		id := e.registrationsOf(trig)[0].ID
		assert.ErrorContains(t, e.c.PauseRegistrations(e.ctx, id), "does not support pause")
		assert.ErrorContains(t, e.c.UnpauseRegistrations(e.ctx, id), "does not support unpause")
	})
}

func TestClientPipeline(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("pipe")
		e.register(fmt.Sprintf("GB('CommandReader').map(lambda x: len(x)).register(trigger='%s', mode='sync', convertToStr=False)", trig), nil)

		// Typed RG.* commands next to ordinary go-redis commands, in one round trip.
		pipe := e.rdb.Pipeline()
		p := gears.NewPipeline(pipe)
		set := pipe.Set(e.ctx, e.name("k"), "v", time.Minute)
		t1 := p.Trigger(e.ctx, trig, "a", "b")
		t2 := p.TriggerOnKey(e.ctx, trig, "k")
		regs := p.DumpRegistrations(e.ctx)
		stats := p.PyStats(e.ctx)
		missing := p.Trigger(e.ctx, e.name("none"))
		err := p.Exec(e.ctx)
		assert.ErrorIs(t, err, gears.ErrUnknownTrigger, "Exec returns the first failed command's error")

		require.NoError(t, set.Err())
		v, err := t1.Result()
		require.NoError(t, err)
		assert.Equal(t, []any{int64(3)}, v)
		assert.Equal(t, []any{int64(2)}, t2.Val())
		require.NoError(t, regs.Err())
		found := false
		for _, r := range regs.Val() {
			found = found || r.Data.Args.Trigger == trig
		}
		assert.True(t, found)
		assert.Positive(t, stats.Val().TotalAllocated)
		assert.ErrorIs(t, missing.Err(), gears.ErrUnknownTrigger)
		assert.Equal(t, []any{"RG.TRIGGER", trig, "a", "b"}, t1.Raw().Args())

		// Client.Pipeline starts its own.
		cp := e.c.Pipeline()
		a := cp.Trigger(e.ctx, trig, "x")
		b := cp.ConfigGet(e.ctx, "MaxExecutions")
		require.NoError(t, cp.Exec(e.ctx))
		assert.Equal(t, []any{int64(2)}, a.Val())
		assert.Equal(t, "MaxExecutions", b.Val()[0].Key)

		// Inside MULTI RedisGears refuses non-sync triggers; sync ones run.
		async := e.name("async")
		e.register(fmt.Sprintf("GB('CommandReader').register(trigger='%s')", async), nil)
		tx := gears.NewPipeline(e.rdb.TxPipeline())
		inMulti := tx.Trigger(e.ctx, async)
		syncInMulti := tx.Trigger(e.ctx, trig, "q")
		assert.ErrorIs(t, tx.Exec(e.ctx), gears.ErrMultiNotAllowed)
		assert.ErrorIs(t, inMulti.Err(), gears.ErrMultiNotAllowed)
		assert.Equal(t, []any{int64(2)}, syncInMulti.Val())
	})
}

func TestClientRESP3Doubles(t *testing.T) {
	// Under RESP3 avgRunDurationMS arrives as a double, under RESP2 as a bulk string; both decode.
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("avg")
		e.register(fmt.Sprintf("GB('CommandReader').register(trigger='%s', mode='sync')", trig), nil)
		_, err := e.c.Trigger(e.ctx, trig)
		require.NoError(t, err)
		raw, err := e.rdb.Do(e.ctx, "RG.DUMPREGISTRATIONS").Slice()
		require.NoError(t, err)
		var avg any
		for _, r := range raw {
			// A shared server may hold other readers, whose RegistrationData has another layout.
			entry := r.([]any)
			if entry[3] != "CommandReader" {
				continue
			}
			data := entry[7].([]any)
			require.Equal(t, "avgRunDurationMS", data[14])
			if args, ok := data[19].([]any); ok && args[1] == trig {
				avg = data[15]
			}
		}
		if e.proto == 3 {
			assert.IsType(t, float64(0), avg)
		} else {
			assert.IsType(t, "", avg)
		}
		r := e.registrationsOf(trig)[0]
		assert.GreaterOrEqual(t, r.Data.AvgRunDurationMS, 0.0)
	})
}

func TestClientNetworkErrorsStayGoRedisErrors(t *testing.T) {
	// Errors that are not server replies are passed through, not turned into *gears.Error.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	_, err := gears.NewClient(rdb).DumpRegistrations(context.Background())
	require.Error(t, err)
	var ge *gears.Error
	assert.False(t, errors.As(err, &ge))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	addr := testtarget.Addr(t)
	rdb2 := newRedis(addr, 3)
	defer rdb2.Close()
	_, err = gears.NewClient(rdb2).PyStats(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestClientFreshServerIDs(t *testing.T) {
	needFresh(t)
	// Only on a fresh server (gears-spec.md section 8): the first execution id is …-0, and the
	// registration counter advances by three per registering RG.PYEXECUTE.
	t.Run("execution", func(t *testing.T) {
		e := newEnv(t, testtarget.Addr(t), 3)
		r, err := e.c.PyExecute(e.ctx, "GB('ShardsIDReader').run()", &gears.PyExecuteOptions{Unblocking: true})
		require.NoError(t, err)
		assert.Equal(t, zeroID+"-0", r.ExecutionID)
	})
	t.Run("registrations", func(t *testing.T) {
		e := newEnv(t, testtarget.Addr(t), 3)
		e.register("GB('CommandReader').register(trigger='a', mode='sync')", &gears.PyExecuteOptions{ID: "a"})
		e.register("GB('CommandReader').register(trigger='b', mode='sync')", &gears.PyExecuteOptions{ID: "b"})
		assert.Equal(t, id1, e.registrationsOf("a")[0].ID)
		assert.Equal(t, zeroID+"-4", e.registrationsOf("b")[0].ID)
		ss, err := e.c.PyDumpSessions(e.ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, []gears.SessionInfo{
			{ID: "a", RefCount: 1, Linked: "primary", RegistrationIDs: []string{id1}},
			{ID: "b", RefCount: 1, Linked: "primary", RegistrationIDs: []string{zeroID + "-4"}},
		}, ss, "sessions are listed sorted by name")
	})
}
