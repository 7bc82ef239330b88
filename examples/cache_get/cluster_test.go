package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRunCluster runs the example as `go run ./examples/cache_get --shards 3` does (or with --addr on the
// nodes of GEARS_CLUSTER_ADDRS), then replays the redis-cli -c command it printed against the cluster.
func TestRunCluster(t *testing.T) {
	args := []string{"--shards", "3"}
	if env := os.Getenv("GEARS_CLUSTER_ADDRS"); env != "" {
		args = []string{"--addr", env}
	}
	var out, errs bytes.Buffer
	err := run(context.Background(), append(args, "--images", "6", "--concurrency", "40", "--latency", "20ms"), &out, &errs)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
	text := out.String()
	t.Log("\n" + text)
	if args[0] == "--shards" {
		assert.Regexp(t, `(?m)^Cluster: 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ \(gearstest, embedded\)$`, text)
	}
	assert.Equal(t, 6, strings.Count(text, "  miss ["))
	assert.Equal(t, 6, strings.Count(text, "  hit  ["))
	assert.Contains(t, text, "The origin saw 1 download(s) for 40 concurrent requests.\n")
	assert.Regexp(t, `(?m)^  redis-cli -c -h 127\.0\.0\.1 -p \d+ RG\.TRIGGERONKEY cache_get cache_get:\{[0-9a-f]{40}\} http://127\.0\.0\.1:\d+/images/\w+/1\.png$`, text)
	assert.Contains(t, text, "  7 bodies, each on the shard that owns its key.\n")
	assert.Equal(t, 3, len(regexp.MustCompile(`(?m)^  127\.0\.0\.1:\d+ holds \d+ bodies$`).FindAllString(text, -1)), "one line per shard")

	if args[0] == "--shards" {
		return // the embedded cluster stopped with run
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli not found (apt-get install redis-tools): not replaying the printed command")
	}
	m := regexp.MustCompile(`(?m)^  (redis-cli -c .*)$`).FindStringSubmatch(text)
	require.NotNil(t, m, text)
	fields := strings.Fields(m[1])
	got, err := exec.Command(fields[0], fields[1:]...).Output()
	require.NoError(t, err)
	u, err := url.Parse(fields[len(fields)-1])
	require.NoError(t, err)
	assert.Equal(t, append(generatePNG(u.Path), '\n'), got)
}
