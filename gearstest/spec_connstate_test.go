package gearstest_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConnectionStateAcrossCommands: a connection's selected DB and protocol hold for every later
// command, whatever the command (gearstest runs plain data commands of a client that never needed
// its own store connection in process, and dials that connection on the first command that needs it:
// SELECT here, or a MULTI holding one).
func TestConnectionStateAcrossCommands(t *testing.T) {
	addr := targetAddr(t)
	for _, proto := range []int{2, 3} {
		null, emptyMap, fv := "$-1\r\n", "*0\r\n", "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
		if proto == 3 {
			null, emptyMap, fv = "_\r\n", "%0\r\n", "%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
		}
		k, h := uniq(t, "k"), uniq(t, "h")
		t.Cleanup(func() {
			rc := dialRaw(t, addr, 2)
			for _, db := range []string{"0", "1"} {
				rc.do("SELECT", db)
				rc.do("DEL", k, h)
			}
		})
		rc := dialRaw(t, addr, proto)
		wire := func(want string, args ...string) {
			t.Helper()
			require.Equal(t, want, string(rc.do(args...).wire), "proto %d: %v", proto, args)
		}
		wire(":1\r\n", "HSET", h, "f", "v")
		wire(fv, "HGETALL", h)
		wire(null, "GET", k)
		wire("+OK\r\n", "SET", k, "db0")
		wire("+OK\r\n", "SELECT", "1")
		wire(null, "GET", k)
		wire(emptyMap, "HGETALL", h)
		wire("+OK\r\n", "SET", k, "db1")
		wire("$3\r\ndb1\r\n", "GET", k)
		wire("+OK\r\n", "SELECT", "0")
		wire("$3\r\ndb0\r\n", "GET", k)
		wire(fv, "HGETALL", h)

		// A transaction that selects DB 1 leaves the connection there.
		rc = dialRaw(t, addr, proto)
		wire("$3\r\ndb0\r\n", "GET", k)
		wire("+OK\r\n", "MULTI")
		wire("+QUEUED\r\n", "SELECT", "1")
		rc.do("EXEC")
		wire("$3\r\ndb1\r\n", "GET", k)
		wire(emptyMap, "HGETALL", h)
	}
}
