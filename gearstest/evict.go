package gearstest

import (
	"bytes"
	"math/rand"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/alicebob/miniredis/v2"
)

// Memory limits of the in-process store: CONFIG SET maxmemory / maxmemory-policy, as Redis 7.0 (the
// server RedisGears 1.2.13 runs on) applies them in processCommand (server.c) and performEvictions
// (evict.c): before each client command, while the memory used is above maxmemory, keys are evicted
// by the policy, each raising the keyspace event "evicted" (which KeysReader registrations receive,
// eventTypes=['evicted']); when the memory is still above the limit (noeviction, or no key the policy
// may evict), a command flagged denyoom (the writes that can grow the data set: SET, LPUSH, …) is
// refused with "OOM command not allowed when used memory > 'maxmemory'.". Commands that run inside
// gear functions (execute()) are not checked, as RedisModule_Call without the "M" flag is not.
// A MULTI refuses a denyoom command at queue time (then EXEC answers EXECABORT), and EXEC is refused
// when it holds one and the memory is above the limit.
//
// The memory used (INFO memory used_memory) is an estimate of the data only, not of a process: for
// every key of every database, the key's length plus 48 bytes (dict entry, object header), plus its
// value: a string's length + 16; per list, set or sorted-set element its length + 16 (+ 16 more for a
// sorted set's score and skiplist node); per hash field its name's and value's lengths + 32; per
// stream entry its fields' and values' lengths + its id's + 32. An empty server uses 0 bytes (a
// real Redis starts at about 1 MB): a limit means "this much data", not "this much process".
// It is recomputed, walking every key, at each client command while maxmemory is set: meant for the
// small data sets of tests (measured with redis-benchmark -t set -c 10 against gears serve on 2 shared
// cores: 37k SET/s without a limit, 3.2k/s with one and 1,000 keys, 460/s with 10,000 keys). Keeping
// the sum up to date per command would need the keys of every command, Lua's writes and the expiries,
// which miniredis does not report.
//
// Policies: noeviction (the default), allkeys-random and volatile-random (a random key of the
// databases taken in turn, as evict.c does), volatile-ttl (the key that expires first: the exact
// choice Redis' sampling approximates). The LRU and LFU policies need the access time or frequency
// of every key, which the in-process store does not track: CONFIG SET refuses them with an error
// that says so (with WithRedis, the external Redis applies any policy itself, and its evicted events
// arrive through its keyspace notifications, notify.go). maxmemory-samples is accepted and shown but
// changes nothing (no policy here samples).

// memLimit is the memory configuration of the in-process store.
type memLimit struct {
	mu      sync.Mutex
	max     int64 // bytes; 0: no limit
	policy  string
	samples string
	nextDB  int   // the database the next random eviction starts from
	evicted int64 // keys evicted (INFO stats evicted_keys)
	rng     *rand.Rand
	on      atomic.Bool // max > 0: the check client commands make first, without the mutex
}

// emulatedPolicies are the maxmemory policies the in-process store applies.
var emulatedPolicies = map[string]bool{
	"noeviction": true, "allkeys-random": true, "volatile-random": true, "volatile-ttl": true,
}

// redisPolicies lists Redis 7.0's policies in its error text's order.
const redisPolicies = "volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction"

// denyOOM are the commands Redis 7.0.15 flags denyoom (COMMAND's flags), upper case.
var denyOOM = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`APPEND BITFIELD BITOP BLMOVE BRPOPLPUSH COPY DECR DECRBY GEOADD
		GEORADIUS GEORADIUSBYMEMBER GEOSEARCHSTORE GETSET HINCRBY HINCRBYFLOAT HMSET HSET HSETNX INCR INCRBY
		INCRBYFLOAT LINSERT LMOVE LPUSH LPUSHX LSET MSET MSETNX PFADD PFDEBUG PFMERGE PSETEX RESTORE
		RESTORE-ASKING RPOPLPUSH RPUSH RPUSHX SADD SDIFFSTORE SET SETBIT SETEX SETNX SETRANGE SINTERSTORE
		SORT SUNIONSTORE XADD XSETID ZADD ZDIFFSTORE ZINCRBY ZINTERSTORE ZRANGESTORE ZUNIONSTORE`) {
		denyOOM[n] = true
	}
}

// msgOOM is Redis' reply to a denyoom command above maxmemory (server.c shared.oomerr).
const msgOOM = "OOM command not allowed when used memory > 'maxmemory'."

func (m *memLimit) settings() (max int64, policy, samples string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	policy, samples = m.policy, m.samples
	if policy == "" {
		policy = "noeviction"
	}
	if samples == "" {
		samples = "5"
	}
	return m.max, policy, samples
}

// parseMemory reads a memory value as Redis' memtoull does: digits with an optional unit b, k, kb,
// m, mb, g, gb (case-insensitive; k = 1000, kb = 1024).
func parseMemory(s string) (int64, bool) {
	i := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsDigit(r) })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.ToLower(s[i:])
	}
	mul := map[string]int64{"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 * 1000, "mb": 1024 * 1024,
		"g": 1000 * 1000 * 1000, "gb": 1024 * 1024 * 1024}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || mul == 0 || n < 0 {
		return 0, false
	}
	return n * mul, true
}

// configSetStore answers CONFIG SET on the in-process store: maxmemory, maxmemory-policy and
// maxmemory-samples (all or nothing, as Redis 7 applies several pairs).
func (s *Server) configSetStore(args [][]byte) value {
	if len(args) < 4 || len(args)%2 != 0 {
		return errValue("ERR wrong number of arguments for 'config|set' command")
	}
	m := &s.data.mem
	max, policy, samples := m.settings()
	for i := 2; i+1 < len(args); i += 2 {
		name, val := strings.ToLower(string(args[i])), string(args[i+1])
		switch name {
		case "maxmemory":
			n, ok := parseMemory(val)
			if !ok {
				return errValue("ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value")
			}
			max = n
		case "maxmemory-policy":
			p := strings.ToLower(val)
			if !strings.Contains(", "+redisPolicies+",", ", "+p+",") {
				return errValue("ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: " + redisPolicies)
			}
			if !emulatedPolicies[p] {
				return errValue("ERR gearstest: maxmemory-policy " + p + " is not emulated by the in-process store, " +
					"which does not track key accesses (it has noeviction, allkeys-random, volatile-random and " +
					"volatile-ttl; WithRedis uses an external Redis, which has them all)")
			}
			policy = p
		case "maxmemory-samples":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 2147483647 {
				return errValue("ERR CONFIG SET failed (possibly related to argument 'maxmemory-samples') - argument must be between 1 and 2147483647 inclusive")
			}
			samples = strconv.Itoa(n)
		default:
			return errValue("ERR gearstest: CONFIG SET " + name + " is not supported by the in-process store " +
				"(it has maxmemory, maxmemory-policy and maxmemory-samples)")
		}
	}
	m.mu.Lock()
	m.max, m.policy, m.samples = max, policy, samples
	m.on.Store(max > 0)
	m.mu.Unlock()
	return status("OK")
}

// storeConfigGet answers CONFIG GET on the in-process store.
func (s *Server) storeConfigGet(patterns [][]byte) value {
	max, policy, samples := s.data.mem.settings()
	dyn := map[string]string{"maxmemory": strconv.FormatInt(max, 10), "maxmemory-policy": policy,
		"maxmemory-samples": samples}
	var out []value
	for _, kv := range append(storeConfig, [2]string{"maxmemory-samples", ""}) {
		v, ok := dyn[kv[0]]
		if !ok {
			v = kv[1]
		}
		for _, p := range patterns {
			if ok, _ := path.Match(strings.ToLower(string(p)), kv[0]); ok {
				out = append(out, bulk(kv[0]), bulk(v))
				break
			}
		}
	}
	return array(out...)
}

// keySize is the estimated size of a key and its value (see the top of this file).
func keySize(db *miniredis.RedisDB, k string) int64 {
	n := int64(len(k) + 48)
	switch db.Type(k) {
	case "string":
		v, _ := db.Get(k)
		n += int64(len(v) + 16)
	case "list":
		l, _ := db.List(k)
		for _, e := range l {
			n += int64(len(e) + 16)
		}
	case "set":
		l, _ := db.Members(k)
		for _, e := range l {
			n += int64(len(e) + 16)
		}
	case "zset":
		z, _ := db.SortedSet(k)
		for e := range z {
			n += int64(len(e) + 32)
		}
	case "hash":
		fs, _ := db.HKeys(k)
		for _, f := range fs {
			n += int64(len(f) + len(db.HGet(k, f)) + 32)
		}
	case "stream":
		es, _ := db.Stream(k)
		for _, e := range es {
			n += int64(len(e.ID) + 32)
			for _, v := range e.Values {
				n += int64(len(v))
			}
		}
	default:
		n += 64
	}
	return n
}

// numDBs is the number of databases of the in-process store.
const numDBs = 16

// usedMemory is the estimate INFO memory shows as used_memory.
func (st *store) usedMemory() int64 {
	var n int64
	for i := 0; i < numDBs; i++ {
		db := st.mini.DB(i)
		for _, k := range db.Keys() {
			n += keySize(db, k)
		}
	}
	return n
}

// victim picks the next key the policy evicts; ok false when there is none.
func (m *memLimit) victim(st *store, policy string) (dbi int, key string, ok bool) {
	if m.rng == nil {
		m.rng = rand.New(rand.NewSource(time.Now().UnixNano()))
	}
	switch policy {
	case "allkeys-random", "volatile-random":
		// evict.c: the databases in turn (next_db), a random key of the first that has one.
		for i := 0; i < numDBs; i++ {
			m.nextDB = (m.nextDB + 1) % numDBs
			db := st.mini.DB(m.nextDB)
			keys := db.Keys()
			if policy == "volatile-random" {
				kept := keys[:0]
				for _, k := range keys {
					if db.TTL(k) > 0 {
						kept = append(kept, k)
					}
				}
				keys = kept
			}
			if len(keys) > 0 {
				return m.nextDB, keys[m.rng.Intn(len(keys))], true
			}
		}
	case "volatile-ttl":
		var best time.Duration
		for i := 0; i < numDBs; i++ {
			db := st.mini.DB(i)
			for _, k := range db.Keys() {
				if ttl := db.TTL(k); ttl > 0 && (!ok || ttl < best) {
					best, dbi, key, ok = ttl, i, k, true
				}
			}
		}
	}
	return dbi, key, ok
}

// checkMemory runs before a client command on the in-process store, under the global lock held for
// token: it evicts keys while the memory is above maxmemory and reports whether the command must be
// refused (OOM); denyoom tells whether the command is flagged denyoom. As evict.c performEvictions
// does, each eviction raises "evicted" right after the key is deleted (for the keys of DB 0, where
// gearstest's registrations listen), and what the functions it runs write does not count against
// the memory the evictions freed.
func (s *Server) checkMemory(token string, denyoom bool) bool {
	if s.data.mini == nil {
		return false
	}
	m := &s.data.mem
	max, policy, _ := m.settings()
	if max <= 0 {
		return false
	}
	used := s.data.usedMemory()
	for used > max && policy != "noeviction" {
		m.mu.Lock()
		dbi, key, ok := m.victim(s.data, policy)
		if ok {
			m.evicted++
		}
		m.mu.Unlock()
		if !ok {
			break
		}
		db := s.data.mini.DB(dbi)
		used -= keySize(db, key)
		db.Del(key)
		if dbi == 0 {
			s.fire(token, "", []keyEvent{{event: "evicted", key: []byte(key)}})
		}
	}
	return denyoom && used > max
}

// limited reports whether maxmemory is set.
func (m *memLimit) limited() bool { return m.on.Load() }

// execOOM reports whether EXEC of c's queue must be refused: it holds a denyoom command and the
// memory stays above maxmemory after the evictions (server.c processCommand: EXEC counts as denyoom
// when a queued command is).
func (s *Server) execOOM(c *client) bool {
	if s.data.mini == nil || !s.data.mem.limited() || c.multiErr {
		return false
	}
	deny := false
	for _, a := range c.txQueue {
		if len(a) > 0 && denyOOM[strings.ToUpper(string(a[0]))] {
			deny = true
		}
	}
	s.lock.acquire(c.token)
	defer s.lock.release(c.token)
	return s.checkMemory(c.token, deny)
}

// checkMemoryFor is checkMemory for a client command given by its arguments.
func (s *Server) checkMemoryFor(token string, args [][]byte) bool {
	if len(args) == 0 || s.data.mini == nil {
		return false
	}
	if !s.data.mem.limited() {
		return false
	}
	return s.checkMemory(token, denyOOM[strings.ToUpper(string(args[0]))])
}

// memoryInfo is INFO's "# Memory" section for the in-process store.
func (s *Server) memoryInfo() string {
	max, policy, _ := s.data.mem.settings()
	used := s.data.usedMemory()
	return "# Memory\r\nused_memory:" + strconv.FormatInt(used, 10) + "\r\nused_memory_human:" + humanBytes(used) +
		"\r\nmaxmemory:" + strconv.FormatInt(max, 10) + "\r\nmaxmemory_human:" + humanBytes(max) +
		"\r\nmaxmemory_policy:" + policy + "\r\n"
}

// withEvictedKeys adds evicted_keys to the "# Stats" section of an INFO body.
func (s *Server) withEvictedKeys(body []byte) []byte {
	s.data.mem.mu.Lock()
	n := s.data.mem.evicted
	s.data.mem.mu.Unlock()
	return bytes.Replace(body, []byte("# Stats\r\n"), []byte("# Stats\r\nevicted_keys:"+strconv.FormatInt(n, 10)+"\r\n"), 1)
}

// humanBytes is Redis' bytesToHuman.
func humanBytes(n int64) string {
	f := float64(n)
	switch {
	case n < 1024:
		return strconv.FormatInt(n, 10) + "B"
	case n < 1024*1024:
		return strconv.FormatFloat(f/1024, 'f', 2, 64) + "K"
	case n < 1024*1024*1024:
		return strconv.FormatFloat(f/(1024*1024), 'f', 2, 64) + "M"
	default:
		return strconv.FormatFloat(f/(1024*1024*1024), 'f', 2, 64) + "G"
	}
}
