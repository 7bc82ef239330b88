package gearstest

import (
	"io"
	"sync/atomic"
)

// pipeReader is what readLoop's bufio.Reader reads the worker's stdout through: before each read of
// the pipe (readLoop has handled every whole message it had) it writes the answers readLoop held
// meanwhile (outbox.putHeld), then holds again once the read returns. The worker writes a burst of
// executions' `call`s in one write (its reading thread holds them while it has input, worker.py
// Worker.write); their answers then leave in one write too, and the worker reads them in one read,
// instead of a write, and often a wake-up of the worker, per answer. The results of the `done`s it
// read are handed to their requesters right after (workerProc.deliver). Nothing is held longer than
// readLoop takes to handle bytes it already has: handling a message never blocks (see outbox).
type pipeReader struct {
	r  io.Reader
	wk atomic.Pointer[workerProc] // set when a server adopts the worker (runWorker); nil for a spare
}

func (p *pipeReader) Read(b []byte) (int, error) {
	wk := p.wk.Load()
	if wk == nil {
		return p.r.Read(b)
	}
	wk.out.unhold()
	wk.deliver() // the results of the `done`s just handled, after the answers (onDone)
	n, err := p.r.Read(b)
	if err == nil {
		wk.out.holdOn()
	}
	return n, err
}
