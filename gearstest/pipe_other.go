//go:build !linux

package gearstest

// nonBlockingWrite is only used on Linux: elsewhere every message to the worker goes through the
// outbox's writer goroutine.
func nonBlockingWrite(any) func([]byte) (int, error) { return nil }
