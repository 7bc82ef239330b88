package main

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears/gearstest"
)

// TestRunEmbedded runs the example as `go run ./examples/cache_get` does, with no server given.
func TestRunEmbedded(t *testing.T) {
	if os.Getenv("GEARS_ADDR") != "" {
		t.Skip("GEARS_ADDR is set: TestRunAgainstServer covers the example")
	}
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"--images", "3", "--concurrency", "40", "--latency", "50ms"}, &out, &errs)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
	text := out.String()
	t.Log("\n" + text)

	assert.Contains(t, text, "(gearstest, embedded)")
	assert.Equal(t, 3, strings.Count(text, "  miss ["))
	assert.Equal(t, 3, strings.Count(text, "  hit  ["))
	assert.Regexp(t, `(?m)^Cache-miss time: \S+$`, text)
	assert.Regexp(t, `(?m)^Cache-hit time: \S+$`, text)
	assert.Regexp(t, `(?m)^That is \d+ times faster!$`, text)
	assert.Contains(t, text, "The origin saw 1 download(s) for 40 concurrent requests.\n")
	assert.Regexp(t, `(?m)^Slowest caller: \S+ \(origin latency 50ms, so \S+ on top\)\.$`, text)
	assert.Regexp(t, `(?m)^  redis-cli -h 127\.0\.0\.1 -p \d+ RG\.TRIGGER cache_get http://127\.0\.0\.1:\d+/images/\w+/1\.png$`, text)
}

// TestRunAgainstServer runs the example with --addr, then replays the redis-cli command it printed:
// the image is cached, so redis-cli gets its bytes without the origin (which is gone by then).
func TestRunAgainstServer(t *testing.T) {
	addr := os.Getenv("GEARS_ADDR")
	if addr == "" {
		addr = gearstest.Run(t).Addr()
	}
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"--addr", addr, "--images", "2", "--concurrency", "20", "--latency", "20ms"}, &out, &errs)
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errs.String())
	text := out.String()
	assert.Contains(t, text, "Server: "+addr+"\n")
	assert.Contains(t, text, "The origin saw 1 download(s) for 20 concurrent requests.\n")

	m := regexp.MustCompile(`(?m)^  (redis-cli .*)$`).FindStringSubmatch(text)
	require.NotNil(t, m, text)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli not found (apt-get install redis-tools): not replaying the printed command")
	}
	fields := strings.Fields(m[1])
	got, err := exec.Command(fields[0], fields[1:]...).Output()
	require.NoError(t, err)
	u, err := url.Parse(fields[len(fields)-1])
	require.NoError(t, err)
	assert.Equal(t, append(generatePNG(u.Path), '\n'), got, "redis-cli prints the reply's bytes and a newline")
}

func TestFlags(t *testing.T) {
	for args, want := range map[string]string{
		"--concurrency 0": "--images and --concurrency must be at least 1, --latency not negative",
		"--images 0":      "--images and --concurrency must be at least 1, --latency not negative",
		"--latency -1s":   "--images and --concurrency must be at least 1, --latency not negative",
		"extra":           `unexpected arguments: ["extra"]`,
		"--nope":          "flag provided but not defined: -nope",
	} {
		var out, errs bytes.Buffer
		err := run(context.Background(), strings.Fields(args), &out, &errs)
		assert.EqualError(t, err, want, args)
		assert.Empty(t, out.String(), args)
	}
	c, err := parseFlags([]string{"--url", "http://a/1", "--url", "http://b/2", "--latency", "1s"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, urlList{"http://a/1", "http://b/2"}, c.urls)
	assert.Equal(t, time.Second, c.latency)
	assert.Equal(t, 100, c.concurrency)
	assert.Equal(t, 8, c.images)
}

func TestOrigin(t *testing.T) {
	o, err := startOrigin("127.0.0.1:0", 0)
	require.NoError(t, err)
	defer o.Close()

	resp, err := http.Get(o.base + "/images/x/1.png")
	require.NoError(t, err)
	body := new(bytes.Buffer)
	_, err = body.ReadFrom(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "image/png", resp.Header.Get("Content-Type"))
	img, err := png.Decode(bytes.NewReader(body.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, 256, img.Bounds().Dx())
	assert.Equal(t, generatePNG("/images/x/1.png"), body.Bytes(), "the same name, the same image")
	assert.NotEqual(t, generatePNG("/images/x/2.png"), body.Bytes(), "every name its own image")
	assert.Equal(t, 1, o.Downloads(o.base+"/images/x/1.png"))

	resp, err = http.Get(o.base + "/other")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestAllowedHosts checks the allowlist the example registers cache_get with: the origin's host first,
// then each --url host once. Without the origin's 127.0.0.1 in it, cache_get refuses the local images.
func TestAllowedHosts(t *testing.T) {
	assert.Equal(t, []string{"127.0.0.1"}, allowedHosts("http://127.0.0.1:4321", nil))
	assert.Equal(t, []string{"127.0.0.1", "cdn.example.com", "::1"},
		allowedHosts("http://127.0.0.1:4321", []string{"https://cdn.example.com/a.png", "http://cdn.example.com/b", "http://[::1]:8080/c", "not a url\x7f"}))
}
