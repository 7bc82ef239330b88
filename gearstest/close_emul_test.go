package gearstest

import (
	"testing"
	"time"
)

// TestCloseRightAfterStart is emulator-only: closing a server at once after Start (before its accept
// loop has had a chance to run) must return, not wait forever for an accept loop that starts later.
func TestCloseRightAfterStart(t *testing.T) {
	for i := 0; i < 5; i++ {
		s, err := Start()
		if err != nil {
			t.Fatal(err)
		}
		watchdog := time.AfterFunc(30*time.Second, func() { panic("gearstest: Close did not return") })
		err = s.Close()
		watchdog.Stop()
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}
