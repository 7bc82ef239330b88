//go:build unix

package gearstest

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup puts the worker in a process group of its own, so that killing it also kills what it
// started (pip installing requirements, subprocesses of user code).
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the worker and its process group.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err == nil {
		return nil
	}
	return cmd.Process.Kill()
}
