package gearstest_test

// RG.PYEXECUTE runs the script's top level on Redis' main thread (gears-spec.md §1.1,
// redisgears_python.c RedisGearsPy_Execute): while the script runs, its top-level execute() calls
// and the apply of its registrations included, no other client's command runs. A run() it starts
// executes afterwards on the execution thread pool, where other clients' commands interleave again.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// getRead is one GET made by the concurrent reader.
type getRead struct {
	start, end time.Time
	val        any
	err        error
}

func TestPyExecuteTopLevelExcludesOtherClients(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		for _, registers := range []bool{false, true} {
			t.Run(fmt.Sprintf("registers=%v", registers), func(t *testing.T) {
				key := uniq(t, "k")
				t.Cleanup(func() { _ = c.Del(context.Background(), key).Err() })
				script := "import time\n" +
					"execute('SET', " + pyQuote(key) + ", 'a')\n" +
					"time.sleep(0.3)\n" +
					"execute('SET', " + pyQuote(key) + ", 'b')\n"
				if registers {
					script += "GB('CommandReader').register(trigger=" + pyQuote(uniq(t, "t")) + ")\n"
				}

				// The reader GETs the key in a loop on its own connection until told to stop.
				var (
					mu    sync.Mutex
					reads []getRead
					wg    sync.WaitGroup
				)
				stop, started := make(chan struct{}), make(chan struct{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						r := getRead{start: time.Now()}
						r.val, r.err = c.result("GET", key)
						r.end = time.Now()
						mu.Lock()
						reads = append(reads, r)
						mu.Unlock()
						if i == 0 {
							close(started)
						}
					}
				}()
				stopReader := sync.OnceFunc(func() {
					close(stop)
					wg.Wait()
				})
				t.Cleanup(stopReader)
				<-started

				sent := time.Now()
				if registers {
					c.registerScript(uniq(t, "s"), script)
				} else {
					c.expectOK("RG.PYEXECUTE", script)
				}
				returned := time.Now()
				stopReader()

				during, seenB := 0, false
				for i, r := range reads {
					require.NoError(t, r.err, "GET #%d", i)
					// Never the value the script overwrites before it returns; once 'b' is seen, it stays.
					if seenB {
						require.Equal(t, "b", r.val, "GET #%d after a GET saw 'b'", i)
					} else {
						require.Contains(t, []any{nil, "b"}, r.val, "GET #%d", i)
					}
					seenB = seenB || r.val == "b"
					if r.start.Before(returned) && r.end.After(sent) {
						during++
					}
				}
				require.Positive(t, during, "no GET overlapped RG.PYEXECUTE (%d reads)", len(reads))
				c.expect("b", "GET", key)
			})
		}
	})
}

func TestPyExecuteBlockingRunDoesNotExcludeOtherClients(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, c *client) {
		started, goKey := uniq(t, "started"), uniq(t, "go")
		t.Cleanup(func() { _ = c.Del(context.Background(), started, goKey).Err() })
		// The run() execution waits (up to 5 s) for a key another client sets while RG.PYEXECUTE still
		// blocks for the run's results: that client's commands must not wait for the execution.
		script := "import time\n" +
			"def f(x):\n" +
			"    execute('SET', " + pyQuote(started) + ", '1')\n" +
			"    for i in range(500):\n" +
			"        if execute('GET', " + pyQuote(goKey) + ") == 'go':\n" +
			"            return 'seen'\n" +
			"        time.sleep(0.01)\n" +
			"    return 'timeout'\n" +
			"GB('ShardsIDReader').map(f).run()\n"
		res := make(chan any, 1)
		go func() {
			v, err := c.result("RG.PYEXECUTE", script)
			if err != nil {
				res <- err
				return
			}
			res <- v
		}()
		waitFor(t, 10*time.Second, "the run() execution to start", func() bool {
			v, err := c.result("GET", started)
			return err == nil && v == "1"
		})
		c.expectOK("SET", goKey, "go")
		select {
		case v := <-res:
			c.match(L(L("seen"), L()), v, "reply of RG.PYEXECUTE")
		case <-time.After(time.Minute):
			t.Fatal("RG.PYEXECUTE did not reply")
		}
	})
}
