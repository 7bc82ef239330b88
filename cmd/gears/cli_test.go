package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The tests drive the built binary, as an operator would: built once per test binary.
var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildOut  []byte
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// gearsBinary builds the gears command (once) and returns its path.
func gearsBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the CLI")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "gears-cli-test")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "gears")
		buildOut, buildErr = exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
	})
	require.NoError(t, buildErr, "%s", buildOut)
	return builtBin
}

// result is a finished gears invocation.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary to completion (bounded by a generous timeout) with NO_COLOR unset and pipes
// for its streams, so no colour and no progress.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gearsBinary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "gears %v: %v\nstderr:\n%s", args, err, stderr.String())
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// proc is a running gears (deploy --watch) whose output lines are observed as they come.
type proc struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string // stdout and stderr lines, in the order read per stream
	mu    sync.Mutex
	all   []string
	done  chan struct{}
	err   error
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(gearsBinary(t), args...)
	outR, outW := io.Pipe()
	cmd.Stdout, cmd.Stderr = outW, outW
	p := &proc{t: t, cmd: cmd, lines: make(chan string, 1000), done: make(chan struct{})}
	require.NoError(t, cmd.Start())
	go func() {
		p.err = cmd.Wait()
		_ = outW.Close()
	}()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			p.mu.Lock()
			p.all = append(p.all, sc.Text())
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// output is everything the process wrote so far.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.all, "\n")
}

// waitLine waits for the next line matching re (lines before it are skipped) and returns it. The
// bound only keeps a broken build from hanging the suite.
func (p *proc) waitLine(re string) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(90 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("gears exited before a line matching %q; output:\n%s", re, p.output())
			}
			if rx.MatchString(l) {
				return l
			}
		case <-timeout:
			p.t.Fatalf("no line matching %q; output:\n%s", re, p.output())
		}
	}
}

// stop sends sig and returns the exit code.
func (p *proc) stop(sig syscall.Signal) int {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig))
	return p.wait()
}

// wait waits for the exit and returns the exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.t.Fatalf("gears did not exit; output:\n%s", p.output())
	}
	for range p.lines {
	}
	if p.err == nil {
		return 0
	}
	ee, ok := p.err.(*exec.ExitError)
	require.True(p.t, ok, "%v", p.err)
	return ee.ExitCode()
}

// writeFile writes a file atomically (a temporary file renamed over it), so that a poll never sees
// half of it.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}
