// Package testtarget picks the RedisGears server the gears test suite runs against:
//
//   - GEARS_ADDR=host:port: an external server (a real RedisGears 1.2), shared by every test;
//   - GEARS_DOCKER=1: a redislabs/redisgears container started once per test binary with dockertest
//     (tests skip with a message when no Docker daemon answers);
//   - otherwise: a fresh gearstest server per test.
//
// On a shared server tests must use unique names and clean up after themselves; Fresh tells whether
// the test has a server of its own.
package testtarget

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gearsgo/gears/gearstest"
	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
	"github.com/redis/go-redis/v9"
)

// DockerImage is the image GEARS_DOCKER=1 runs. RedisGears 2.x (":latest") has no RG.PYEXECUTE, so a
// 1.2 tag is pinned.
const DockerImage = "redislabs/redisgears:1.2.13"

// Kind names the target: "gearstest", "external" or "docker".
func Kind() string {
	switch {
	case os.Getenv("GEARS_ADDR") != "":
		return "external"
	case os.Getenv("GEARS_DOCKER") == "1":
		return "docker"
	}
	return "gearstest"
}

// Fresh reports whether each test gets a server of its own (gearstest), so that it may rely on a fresh
// server's ids and counters.
func Fresh() bool { return Kind() == "gearstest" }

// Addr returns the address of the server for test t, starting it if needed.
func Addr(t testing.TB) string {
	t.Helper()
	switch Kind() {
	case "external":
		return os.Getenv("GEARS_ADDR")
	case "docker":
		addr, err := dockerAddr()
		if err != nil {
			t.Skipf("GEARS_DOCKER=1 but %v", err)
		}
		return addr
	}
	return gearstest.Run(t).Addr()
}

var docker struct {
	once sync.Once
	pool *dockertest.Pool
	res  *dockertest.Resource
	addr string
	err  error
}

// dockerAddr starts the container once.
func dockerAddr() (string, error) {
	docker.once.Do(func() {
		pool, err := dockertest.NewPool("")
		if err == nil {
			err = pool.Client.Ping()
		}
		if err != nil {
			docker.err = fmt.Errorf("no Docker daemon answers (%v): skipping the tests against %s", err, DockerImage)
			return
		}
		repo, tag := "redislabs/redisgears", "1.2.13"
		res, err := pool.RunWithOptions(&dockertest.RunOptions{
			Repository:   repo,
			Tag:          tag,
			ExposedPorts: []string{"6379/tcp"},
			// Loopback only: the suite never listens beyond this machine.
			PortBindings: map[dc.Port][]dc.PortBinding{"6379/tcp": {{HostIP: "127.0.0.1", HostPort: ""}}},
		}, func(hc *dc.HostConfig) { hc.AutoRemove = true })
		if err != nil {
			docker.err = fmt.Errorf("starting %s failed: %v", DockerImage, err)
			return
		}
		_ = res.Expire(1800) // a crashed test binary must not leave the container behind for long
		addr := "127.0.0.1:" + res.GetPort("6379/tcp")
		pool.MaxWait = time.Minute
		err = pool.Retry(func() error {
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			defer rdb.Close()
			return rdb.Do(context.Background(), "RG.PYSTATS").Err()
		})
		if err != nil {
			_ = pool.Purge(res)
			docker.err = fmt.Errorf("%s did not answer: %v", DockerImage, err)
			return
		}
		docker.pool, docker.res, docker.addr = pool, res, addr
	})
	return docker.addr, docker.err
}

// Cleanup removes the Docker container if one was started; call it from TestMain after m.Run.
func Cleanup() {
	if docker.res != nil {
		_ = docker.pool.Purge(docker.res)
		docker.res = nil
	}
}
