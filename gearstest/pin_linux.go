package gearstest

import (
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// pairPin puts the two ends of the sync lane's ping-pong on one CPU while sync triggers run in rounds
// (lane.go): the worker's reading thread and readLoop's thread. A sync trigger's execute() is a strict
// round trip (the worker writes its call and waits; readLoop answers and waits for the next message),
// so one side always sleeps while the other runs. On different CPUs each hop woke a sleeping thread
// on an idle CPU, which on a virtual machine is the slow path (an idle vCPU halts, and its wake-up
// goes through the hypervisor): a Go runtime trace under 50 sync clients showed ~28 us of each
// ~49 us trigger spent in those two hops. On one CPU a hop is a switch between two threads of one
// run queue: the worker yields while it polls for its reply, readLoop runs, answers and blocks, the
// worker goes on. Sync triggers/s with 50 clients, medians of interleaved runs: 20.6k -> 25.2k; the
// other modes start no rounds and are not pinned.
//
// The CPU is one of the process's allowed CPUs, picked by the worker's pid (the servers of one
// process spread over the CPUs); the worker learns it in `init` (pin_cpu). Both sides pin when a
// round starts and restore their thread's own mask once rounds stopped for a while (syncLane's
// unpin timer; the worker's watchdog), not after each round: one client's sync triggers make a
// round each. GEARS_PIN=0 turns it off, as does a single allowed CPU. Affinity is advice: a failed
// call changes nothing else.
type pairPin struct {
	cpu     int          // the CPU, or -1 (off)
	tid     atomic.Int32 // readLoop's thread once bound (bind), else 0
	allowed cpuMask      // readLoop's thread's own mask, restored when a round ends
	one     cpuMask      // cpu alone
	pinned  bool         // set(true) pinned it and set(false) did not restore it yet (lane.mu)
}

// cpuMask is a CPU set as sched_setaffinity takes it (1024 CPUs).
type cpuMask [16]uint64

var pinEnabled = os.Getenv("GEARS_PIN") != "0"

// pickPairCPU picks the CPU for a worker of pid, or -1 when pinning is off or there is one CPU.
func pickPairCPU(pid int) int {
	if !pinEnabled || pid <= 0 {
		return -1
	}
	var m cpuMask
	if getAffinity(0, &m) != nil {
		return -1
	}
	cpus := m.cpus()
	if len(cpus) < 2 {
		return -1
	}
	return cpus[pid%len(cpus)]
}

// bind runs on readLoop's goroutine before it reads: it locks the goroutine to its thread (for
// good: the thread ends with the goroutine) and notes the thread and its mask.
func (p *pairPin) bind() {
	if p.cpu < 0 {
		return
	}
	runtime.LockOSThread()
	tid := syscall.Gettid()
	if getAffinity(tid, &p.allowed) != nil {
		return
	}
	p.one = cpuMask{}
	p.one[p.cpu/64] = 1 << (p.cpu % 64)
	p.tid.Store(int32(tid))
}

// set pins readLoop's thread to the CPU (on) or restores its mask (off); the lane calls it under
// its mutex when a round starts and ends.
func (p *pairPin) set(on bool) {
	tid := int(p.tid.Load())
	if tid == 0 || on == p.pinned {
		return
	}
	m := &p.allowed
	if on {
		m = &p.one
	}
	if setAffinity(tid, m) == nil {
		p.pinned = on
	}
}

// unpin restores the thread's mask (a nil *workerProc is nothing to do).
func (wk *workerProc) unpin() {
	if wk != nil {
		wk.pin.set(false)
	}
}

func (m *cpuMask) cpus() []int {
	var out []int
	for i := 0; i < len(m)*64; i++ {
		if m[i/64]&(1<<(i%64)) != 0 {
			out = append(out, i)
		}
	}
	return out
}

func getAffinity(tid int, m *cpuMask) error {
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, uintptr(tid), unsafe.Sizeof(*m), uintptr(unsafe.Pointer(m)))
	if e != 0 {
		return e
	}
	return nil
}

func setAffinity(tid int, m *cpuMask) error {
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(*m), uintptr(unsafe.Pointer(m)))
	if e != 0 {
		return e
	}
	return nil
}
