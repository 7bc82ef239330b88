package gearstest

import (
	"bytes"
	"io"
	"testing"
)

// Emulator-only: how the Go side batches its answers to the worker's calls (outbox.putHeld, pipeReader).

// recordingOutbox is an outbox whose non-blocking writes are recorded, one entry per write.
func recordingOutbox() (*outbox, *[]string) {
	o := newOutbox()
	var writes []string
	o.try = func(b []byte) (int, error) {
		writes = append(writes, string(b))
		return len(b), nil
	}
	return o, &writes
}

func TestOutboxHoldsAnswersUntilUnhold(t *testing.T) {
	o, writes := recordingOutbox()
	o.holdOn()
	if err := o.putHeld([]byte("a;")); err != nil {
		t.Fatal(err)
	}
	_ = o.putHeld([]byte("b;"))
	if len(*writes) != 0 {
		t.Fatalf("held answers were written: %q", *writes)
	}
	o.unhold()
	if want := []string{"a;b;"}; !equalStrings(*writes, want) {
		t.Fatalf("writes = %q, want %q (one write, in order)", *writes, want)
	}
	_ = o.putHeld([]byte("c;")) // not holding: at once
	if want := []string{"a;b;", "c;"}; !equalStrings(*writes, want) {
		t.Fatalf("writes = %q, want %q", *writes, want)
	}
}

func TestOutboxMessageBehindHeldAnswersLeavesAtOnceInOrder(t *testing.T) {
	o, writes := recordingOutbox()
	o.holdOn()
	_ = o.putHeld([]byte("answer;"))
	_ = o.put([]byte("trigger;")) // another goroutine's message is never held, nor overtakes
	if want := []string{"answer;trigger;"}; !equalStrings(*writes, want) {
		t.Fatalf("writes = %q, want %q", *writes, want)
	}
	_ = o.put([]byte("next;")) // still holding, nothing queued: written at once
	if want := []string{"answer;trigger;", "next;"}; !equalStrings(*writes, want) {
		t.Fatalf("writes = %q, want %q", *writes, want)
	}
}

// TestPipeReaderWritesHeldAnswersBeforeItReads: readLoop's answers to what one read returned leave
// before the next read of the pipe, which may block until the worker, waiting for them, writes more.
func TestPipeReaderWritesHeldAnswersBeforeItReads(t *testing.T) {
	o, writes := recordingOutbox()
	src := &observingReader{data: []string{"first", "second"}, writes: writes}
	p := &pipeReader{r: src}
	p.wk.Store(&workerProc{out: o})
	buf := make([]byte, 16)
	if n, _ := p.Read(buf); string(buf[:n]) != "first" {
		t.Fatalf("read %q", buf[:n])
	}
	_ = o.putHeld([]byte("reply1;"))
	_ = o.putHeld([]byte("reply2;"))
	if len(*writes) != 0 {
		t.Fatalf("answers left before readLoop read again: %q", *writes)
	}
	if n, _ := p.Read(buf); string(buf[:n]) != "second" {
		t.Fatalf("read %q", buf[:n])
	}
	if want := []string{"reply1;reply2;"}; !equalStrings(src.seen[1], want) {
		t.Fatalf("written before the second read: %q, want %q", src.seen[1], want)
	}
	if _, err := p.Read(buf); err != io.EOF {
		t.Fatalf("third read: %v, want EOF", err)
	}
	_ = o.putHeld([]byte("late;")) // after EOF the outbox does not hold: at once
	if want := []string{"reply1;reply2;", "late;"}; !equalStrings(*writes, want) {
		t.Fatalf("writes = %q, want %q", *writes, want)
	}
}

// observingReader returns data one element per Read and records, at each Read, what had been written.
type observingReader struct {
	data   []string
	writes *[]string
	seen   [][]string
}

func (r *observingReader) Read(b []byte) (int, error) {
	r.seen = append(r.seen, append([]string(nil), *r.writes...))
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.data[0])
	r.data = r.data[1:]
	return n, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal([]byte(a[i]), []byte(b[i])) {
			return false
		}
	}
	return true
}

// TestDoneResultsAreHandedOverAfterTheAnswers: the result of a `done` reaches its requester only when
// readLoop reads again, after the answers held meanwhile were written (onDone, deliver); its lock
// release happens at once.
func TestDoneResultsAreHandedOverAfterTheAnswers(t *testing.T) {
	o, writes := recordingOutbox()
	wk := &workerProc{out: o, pending: map[int64]*pendingReq{}}
	released := 0
	pr := &pendingReq{ch: make(chan value, 1), release: func() { released++ }}
	wk.pending[7] = pr
	src := &observingReader{data: []string{"first", "second"}, writes: writes}
	p := &pipeReader{r: src}
	p.wk.Store(wk)
	buf := make([]byte, 16)
	_, _ = p.Read(buf)
	wk.onDone(7, bulk("result"))
	_ = o.putHeld([]byte("answer;"))
	if released != 1 {
		t.Fatalf("released %d times before the next read, want 1", released)
	}
	select {
	case v := <-pr.ch:
		t.Fatalf("result %q handed over before readLoop read again", v.Str)
	default:
	}
	_, _ = p.Read(buf)
	if want := []string{"answer;"}; !equalStrings(src.seen[1], want) {
		t.Fatalf("written before the second read: %q, want %q", src.seen[1], want)
	}
	select {
	case v := <-pr.ch:
		if string(v.Str) != "result" {
			t.Fatalf("result %q", v.Str)
		}
	default:
		t.Fatal("result not handed over at the second read")
	}
	if _, ok := wk.pending[7]; ok {
		t.Fatal("request still pending")
	}
}

// TestOutboxPutDuringADirectWriteQueuesBehindIt: while one goroutine writes a message itself
// (writeDirect, outside the outbox's mutex), another goroutine's put returns at once and its message
// leaves with that goroutine's next write, after the first one.
func TestOutboxPutDuringADirectWriteQueuesBehindIt(t *testing.T) {
	o := newOutbox()
	inWrite, release := make(chan struct{}), make(chan struct{})
	var writes []string
	o.try = func(b []byte) (int, error) {
		if len(writes) == 0 {
			close(inWrite)
			<-release
		}
		writes = append(writes, string(b))
		return len(b), nil
	}
	first := make(chan error, 1)
	go func() { first <- o.put([]byte("one;")) }()
	<-inWrite
	if err := o.put([]byte("two;")); err != nil { // returns while "one;" is being written
		t.Fatal(err)
	}
	_ = o.put([]byte("three;"))
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if want := []string{"one;", "two;three;"}; !equalStrings(writes, want) {
		t.Fatalf("writes = %q, want %q (the rest in one write, in order, by the first goroutine)", writes, want)
	}
	select {
	case <-o.wake:
		t.Fatal("the writer goroutine was signalled: nothing was left for it")
	default:
	}
}

// TestOutboxPartialDirectWriteGoesFirstToTheWriter: what the pipe did not take of a direct write
// goes to the writer goroutine ahead of what was queued meanwhile.
func TestOutboxPartialDirectWriteGoesFirstToTheWriter(t *testing.T) {
	o := newOutbox()
	inWrite, release := make(chan struct{}), make(chan struct{})
	o.try = func(b []byte) (int, error) {
		close(inWrite)
		<-release
		return 2, nil // the pipe took "on" of "one;"
	}
	first := make(chan error, 1)
	go func() { first <- o.put([]byte("one;")) }()
	<-inWrite
	_ = o.put([]byte("two;"))
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	queued := string(o.buf)
	o.mu.Unlock()
	if queued != "e;two;" {
		t.Fatalf("queued for the writer: %q, want %q", queued, "e;two;")
	}
	select {
	case <-o.wake:
	default:
		t.Fatal("the writer goroutine was not signalled")
	}
}
