package gearstest_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestUpgradeWhileTriggering checks spec §3.2 under load: while RG.PYEXECUTE … UPGRADE replaces a
// session again and again, concurrent RG.TRIGGER calls of its trigger always meet the old or the new
// code (the real server resolves the trigger name on its main thread), never an error. Each upgrade
// waits until a trigger has been answered by the version it replaces, so triggers provably interleave
// with the upgrades (every version answers at least one).
func TestUpgradeWhileTriggering(t *testing.T) {
	tg := newTarget(t)
	c := tg.newClient(t, 3)
	sid := uniq(t, "s")
	trig := uniq(t, "t")
	script := func(v int) string {
		return fmt.Sprintf("GB('CommandReader').map(lambda x: 'v%d').register(trigger=%s, mode='sync')", v, pyQuote(trig))
	}
	c.registerScript(sid, script(0))
	const versions = 30

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		answered = map[string]int{} // reply -> how many triggers got it
	)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				v, err := c.Do(context.Background(), "RG.TRIGGER", trig).Result()
				mu.Lock()
				if err != nil {
					failures = append(failures, err.Error())
				} else if arr, ok := v.([]any); !ok || len(arr) != 1 {
					failures = append(failures, fmt.Sprintf("reply %#v", v))
				} else {
					answered[fmt.Sprint(arr[0])]++
				}
				mu.Unlock()
			}
		}()
	}
	count := func(reply string) int {
		mu.Lock()
		defer mu.Unlock()
		return answered[reply]
	}
	for v := 1; v <= versions; v++ {
		waitFor(t, 30*time.Second, fmt.Sprintf("a trigger answered by v%d", v-1), func() bool { return count(fmt.Sprintf("v%d", v-1)) > 0 })
		c.expectOK("RG.PYEXECUTE", script(v), "ID", sid, "UPGRADE")
	}
	stop.Store(true)
	wg.Wait()
	require.Empty(t, failures, "trigger calls during upgrades")
	for v := 0; v < versions; v++ {
		require.Positive(t, answered[fmt.Sprintf("v%d", v)], "v%d answered no trigger", v)
	}
	c.expect(L(fmt.Sprintf("v%d", versions)), "RG.TRIGGER", trig)
}
