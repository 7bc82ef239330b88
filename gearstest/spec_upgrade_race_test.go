package gearstest_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUpgradeWhileTriggering checks spec §3.2 under load: while RG.PYEXECUTE … UPGRADE replaces a
// session again and again, concurrent RG.TRIGGER calls of its trigger always meet the old or the new
// code (the real server resolves the trigger name on its main thread), never an error.
func TestUpgradeWhileTriggering(t *testing.T) {
	tg := newTarget(t)
	c := tg.newClient(t, 3)
	sid := uniq(t, "s")
	trig := uniq(t, "t")
	script := func(v int) string {
		return fmt.Sprintf("GB('CommandReader').map(lambda x: 'v%d').register(trigger=%s, mode='sync')", v, pyQuote(trig))
	}
	c.registerScript(sid, script(0))

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		calls    atomic.Int64
	)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				v, err := c.Do(context.Background(), "RG.TRIGGER", trig).Result()
				calls.Add(1)
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				if arr, ok := v.([]any); !ok || len(arr) != 1 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("reply %#v", v))
					mu.Unlock()
				}
			}
		}()
	}
	for v := 1; v <= 30; v++ {
		c.expectOK("RG.PYEXECUTE", script(v), "ID", sid, "UPGRADE")
	}
	stop.Store(true)
	wg.Wait()
	require.Empty(t, failures, "trigger calls during upgrades (%d calls)", calls.Load())
	c.expect(L("v30"), "RG.TRIGGER", trig)
}
