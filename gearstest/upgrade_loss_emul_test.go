package gearstest_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears/gearstest"
)

// logSink collects a server's log for a test to read while the server writes it.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logSink) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logSink) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestQueuedTriggersAbortedByUpgrade reproduces the silent loss of gears-spec 8.1 ("rolling deploy"):
// an async trigger execution accepted but not started when its registration is replaced by an UPGRADE
// (or unregistered with ABORTPENDING) replies [] with no error, and its function never runs; the
// execution that had started (it waits on a future) cannot be aborted, goes on, and the server logs
// "Failed aborting execution on unregister.". Emulator-only: the queue here is the one of an inorder
// registration (one execution at a time), which makes the window deterministic.
func TestQueuedTriggersAbortedByUpgrade(t *testing.T) {
	for _, how := range []string{"upgrade", "unregister-abortpending"} {
		t.Run(how, func(t *testing.T) {
			logs := &logSink{}
			srv := gearstest.Run(t, gearstest.WithLogger(logs))
			c := (&target{addr: srv.Addr()}).newClient(t, 3)
			sid, box, counter := uniq(t, "s"), uniq(t, "box"), uniq(t, "calls")
			trig, held, release := uniq(t, "t"), uniq(t, "held"), uniq(t, "release")
			script := func(fn string) string {
				return heldFutures(box) + fmt.Sprintf(`def counted(x):
    execute('INCR', %s)
    return wait(x)
GB('CommandReader').map(%s).register(trigger=%s, mode='async', inorder=True)
GB('CommandReader').map(held).register(trigger=%s, mode='sync')
GB('CommandReader').map(release).register(trigger=%s, mode='sync')
`, pyQuote(counter), fn, pyQuote(trig), pyQuote(held), pyQuote(release))
			}
			c.registerScript(sid, script("counted"))
			id := c.registrationByTrigger(trig)[1].(string)

			// The first call starts (its function counted it) and waits on its future; the second is
			// accepted (numTriggered) and queued behind it.
			first := startWaitingTrigger(t, c, trig, held, 1)
			second := make(chan string, 1)
			go func() {
				v, err := c.Do(context.Background(), "RG.TRIGGER", trig).Result()
				second <- fmt.Sprintf("%v %v", v, err)
			}()
			waitFor(t, 30*time.Second, "the second call to be accepted", func() bool {
				reg := c.registration(id)
				return reg != nil && field(t, reg[7].([]any), "numTriggered") == int64(2)
			})

			if how == "upgrade" {
				c.expectOK("RG.PYEXECUTE", script("lambda x: 'v2'"), "ID", sid, "UPGRADE")
			} else {
				c.expectOK("RG.UNREGISTER", id, "ABORTPENDING")
			}
			require.Nil(t, c.registration(id), "the old registration is gone")

			releaseAll(t, c, release, "late", 1)
			for name, ch := range map[string]<-chan string{"first": first, "second": second} {
				select {
				case got := <-ch:
					want := map[string]string{"first": "[late] <nil>", "second": "[] <nil>"}[name]
					require.Equal(t, want, got, "the %s call", name)
				case <-time.After(time.Minute):
					t.Fatalf("the %s call never replied", name)
				}
			}
			require.Equal(t, "1", c.do("GET", counter), "the second call's function never ran")
			require.Contains(t, logs.String(), "Failed aborting execution on unregister.")
			require.Equal(t, 1, strings.Count(logs.String(), "Failed aborting execution on unregister."))
			if how == "upgrade" {
				c.expect(L("v2"), "RG.TRIGGER", trig)
			}
		})
	}
}
