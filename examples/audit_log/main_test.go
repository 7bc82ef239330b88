package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
)

// TestRunEmbedded runs the example as `go run ./examples/audit_log` does.
func TestRunEmbedded(t *testing.T) {
	args := []string{}
	if a := os.Getenv("GEARS_ADDR"); a != "" {
		args = append(args, "--addr", a)
		t.Cleanup(func() { // a shared server: leave nothing behind
			rdb := redis.NewClient(&redis.Options{Addr: a})
			defer rdb.Close()
			_, _ = gears.Undeploy(context.Background(), rdb, "audit_log")
			_ = rdb.Del(context.Background(), "audit", "user:1", "user:2", "config:theme").Err()
		})
	}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), args, &out), out.String())
	want := `deploy audit.py: created (1 registration)
deploy audit.py: unchanged (1 registration)

writes:
  HSET user:1 name Ada
  HSET user:2 name Linus
  SET config:theme dark
  HDEL user:1 name
  DEL user:2

the audit stream, written by the server (5 entries):
  hset    user:1
  hset    user:2
  hdel    user:1
  del     user:1
  del     user:2
`
	text := out.String()
	require.Contains(t, text, want, text)
}
