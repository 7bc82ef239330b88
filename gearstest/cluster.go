package gearstest

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Cluster is a running gearstest Redis Cluster: N shards, each a full gearstest Server with its own
// data store, its own Python worker and its own range of the 16384 hash slots, answering the cluster
// commands (CLUSTER SLOTS, SHARDS, NODES, INFO, MYID, KEYSLOT) and redirecting keyed commands for a
// slot it does not own with MOVED, as a Redis Cluster of masters without replicas does. Failover,
// resharding (ASK, MIGRATING/IMPORTING) and replicas are not emulated: the slot map never changes.
//
// Each shard has a worker of its own rather than sharing one: a real cluster's shards are separate
// processes whose Python interpreters share nothing (globals, registrations, sessions, a crash), so a
// worker per shard keeps that isolation with no per-shard bookkeeping in the worker; the shards start
// in parallel, so the cost is memory (one interpreter per shard), not start-up time.
type Cluster struct {
	shards []*Server
	mu     sync.RWMutex
	addrs  []string // announced address of each shard ("127.0.0.1:PORT"), filled as they listen
	ranges [][2]int // the slots of each shard, first..last
	tags   []string // what hashtag() answers on each shard (slotTag of its first slot)
	runIDs []string // each shard's Redis run id (40 random hex characters, new for every cluster)
	closed atomic.Bool

	inflightMu sync.Mutex
	inflight   map[string]bool // session ids with an RG.PYEXECUTE in flight on any shard (K1, hazards.go)
	tokens     atomic.Int64    // numbers the lock tokens of applies from another shard (cluster_regs.go)
}

// clusterShard is what a Server knows of the cluster it belongs to.
type clusterShard struct {
	cl          *Cluster
	index       int
	id          string // node id: 40 hex characters, stable per shard index
	first, last int    // the slots this shard owns, first..last
	hashtag     string // what hashtag() answers on this shard: a tag of slot first

	specsOnce sync.Once
	specs     map[string]keySpec // key positions by command name (cluster_slots.go)
}

// withShard makes Start start a shard of c.
func withShard(sh *clusterShard) Option { return func(o *options) { o.shard = sh } }

// shardID returns the node id of shard i: the SHA-1 of "gearstest shard <i>" in hex, so that a test
// can expect the same ids from every cluster of the same size.
func shardID(i int) string {
	sum := sha1.Sum([]byte("gearstest shard " + strconv.Itoa(i)))
	return hex.EncodeToString(sum[:])
}

// StartCluster starts a cluster of n shards (1 ≤ n ≤ 16384) with the given options, which apply to every
// shard. WithAddr("HOST:PORT") puts the shards on PORT, PORT+1, …, PORT+n-1 (the default, port 0, gives
// each a free port); WithRedis is refused, since each shard has a data store of its own. The caller must
// Close the cluster.
func StartCluster(n int, opts ...Option) (*Cluster, error) {
	if n < 1 || n > clusterSlots {
		return nil, fmt.Errorf("gearstest: a cluster has 1 to %d shards, not %d", clusterSlots, n)
	}
	o := options{addr: "127.0.0.1:0"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.redisURL != "" {
		return nil, errors.New("gearstest: a cluster can not use WithRedis: each shard has a data store of its own")
	}
	host, portText, err := net.SplitHostPort(o.addr)
	if err != nil {
		return nil, fmt.Errorf("gearstest: cluster address %q: %w", o.addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 || (port > 0 && port+n-1 > 65535) {
		return nil, fmt.Errorf("gearstest: cluster address %q: the ports %s..%s+%d must be in 1..65535", o.addr, portText, portText, n-1)
	}
	ranges := splitSlots(n)
	cl := &Cluster{shards: make([]*Server, n), addrs: make([]string, n), ranges: ranges, runIDs: make([]string, n),
		tags: make([]string, n)}
	for i, r := range ranges {
		cl.tags[i] = slotTag(r[0])
	}
	for i := range cl.runIDs {
		var b [20]byte
		_, _ = rand.Read(b[:])
		cl.runIDs[i] = hex.EncodeToString(b[:])
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		addr := net.JoinHostPort(host, "0")
		if port > 0 {
			addr = net.JoinHostPort(host, strconv.Itoa(port+i))
			cl.addrs[i] = announced(addr)
		}
		sh := &clusterShard{cl: cl, index: i, id: shardID(i), first: ranges[i][0], last: ranges[i][1],
			hashtag: cl.tags[i]}
		shardOpts := append(append([]Option{}, opts...), WithAddr(addr), withShard(sh))
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Start(shardOpts...)
			if err != nil {
				errs[i] = fmt.Errorf("shard %d: %w", i, err)
				return
			}
			cl.mu.Lock()
			cl.shards[i] = s
			cl.addrs[i] = announced(s.Addr())
			cl.mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = cl.Close()
		return nil, err
	}
	return cl, nil
}

// announced is the address a shard gives clients for itself: its listening address, with an
// unspecified host (":7000", "0.0.0.0") replaced by 127.0.0.1.
func announced(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// RunCluster starts a cluster of n shards for a test and stops it when the test ends. As with Run, the
// test fails when a hazard happened on any shard meanwhile, unless the cluster was started with
// AllowHazards.
func RunCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	tl := &testLog{t: t}
	opts = append([]Option{WithLogger(tl)}, opts...)
	cl, err := StartCluster(n, opts...)
	if err != nil {
		t.Fatalf("gearstest: %v", err)
	}
	t.Cleanup(func() {
		_ = cl.Close()
		tl.mu.Lock()
		tl.done = true
		tl.mu.Unlock()
		for _, s := range cl.shards {
			reportHazards(t, s)
		}
	})
	return cl
}

// Addrs returns the address of every shard, in slot order (shard 0 owns slot 0).
func (cl *Cluster) Addrs() []string {
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	return append([]string(nil), cl.addrs...)
}

// Shards returns the servers of the cluster, in slot order (for Hazards, KillWorker, …).
func (cl *Cluster) Shards() []*Server { return append([]*Server(nil), cl.shards...) }

// Close stops every shard.
func (cl *Cluster) Close() error {
	if !cl.closed.CompareAndSwap(false, true) {
		return nil
	}
	errs := make([]error, len(cl.shards))
	var wg sync.WaitGroup
	for i, s := range cl.shards {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// addr returns the announced address of shard i.
func (cl *Cluster) addr(i int) string {
	cl.mu.RLock()
	defer cl.mu.RUnlock()
	return cl.addrs[i]
}

// owner returns the index of the shard that owns slot.
func (sh *clusterShard) owner(slot int) int {
	rs := sh.cl.ranges
	return sort.Search(len(rs), func(i int) bool { return rs[i][1] >= slot })
}

// mode is Redis' server mode as INFO and HELLO name it.
func (s *Server) mode() string {
	if s.shard != nil {
		return "cluster"
	}
	return "standalone"
}

// shardInit is what the worker's init message says of this shard (python/PROTOCOL.md): its node id,
// its hashtag(), its index and every shard's node id, hashtag and slot range (a distributed execution
// runs a partition per shard in this worker: cluster_exec.go); nil stand-alone.
func (s *Server) shardInit() map[string]any {
	if s.shard == nil {
		return nil
	}
	cl := s.shard.cl
	shards := make([]map[string]any, len(cl.ranges))
	for i, r := range cl.ranges {
		shards[i] = map[string]any{"myid": shardID(i), "hashtag": cl.tags[i], "first": r[0], "last": r[1]}
	}
	return map[string]any{"myid": s.shard.id, "hashtag": s.shard.hashtag, "index": s.shard.index, "shards": shards}
}
