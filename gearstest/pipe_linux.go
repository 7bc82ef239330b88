package gearstest

import (
	"errors"
	"syscall"
)

// nonBlockingWrite returns a function that writes to w's file descriptor without ever waiting: it
// writes what the pipe takes now and reports how much that was (EAGAIN is 0 bytes, no error). It
// returns nil when w is not a file in non-blocking mode (then every message goes through the writer
// goroutine). The outbox (worker_io.go) uses it to send a message straight from the goroutine that
// queues it while nothing else is queued, which saves a goroutine hand-off per message.
func nonBlockingWrite(w any) func([]byte) (int, error) {
	sc, ok := w.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	nonBlocking := false
	_ = rc.Control(func(fd uintptr) {
		flags, err := fcntlGetFlags(int(fd))
		nonBlocking = err == nil && flags&syscall.O_NONBLOCK != 0
	})
	if !nonBlocking {
		return nil
	}
	w2 := &rawWriter{rc: rc}
	w2.fn = w2.write
	return w2.try
}

// rawWriter is nonBlockingWrite's function with its state in one allocation made once: a closure
// passed to RawConn.Write escapes (an interface method), so a fresh one per message cost three heap
// allocations on every message sent to the worker. Its callers serialize (one writeDirect at a time).
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool // w.write, bound once
	b   []byte
	n   int
	err error
}

func (w *rawWriter) write(fd uintptr) bool {
	w.n, w.err = syscall.Write(int(fd), w.b)
	return true // never wait for the pipe to drain: the writer goroutine does that
}

func (w *rawWriter) try(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil // (Write may fail without calling fn: the fd is closed)
	cerr := w.rc.Write(w.fn)
	n, err := w.n, w.err
	w.b = nil
	if n < 0 {
		n = 0
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		err = nil
	}
	if cerr != nil {
		err = cerr
	}
	return n, err
}

func fcntlGetFlags(fd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(syscall.F_GETFL), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
