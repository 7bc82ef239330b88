//go:build !linux

package gearstest

// pairPin is Linux only (pin_linux.go): elsewhere the sync lane's two ends are never pinned.
type pairPin struct{ cpu int }

func pickPairCPU(int) int { return -1 }

func (*pairPin) bind()    {}
func (*pairPin) set(bool) {}

func (*workerProc) unpin() {}
