package gearstest

import (
	"bytes"
	"strconv"
	"strings"
)

// keyEvent is one keyspace notification: the event name Redis gives it and the key it touched.
type keyEvent struct {
	event string
	key   []byte
}

// The keyspace events of the in-process store's commands. miniredis sends no keyspace notifications,
// so gearstest derives them from each command that succeeded, its arguments and its reply, the way
// Redis 7.0 (the server RedisGears 1.2.13 runs on) raises them: the notifyKeyspaceEvent calls of
// src/t_string.c, t_list.c, t_hash.c, t_set.c, t_zset.c, t_stream.c, hyperloglog.c, bitops.c, sort.c,
// geo.c, db.c and expire.c. The event names and the rules for when a command raises nothing (nothing
// changed: SADD of a present member, SETNX of an existing key, …) come from there; a container emptied by
// a command also raises "del" on its key (the dbDelete + notify "del" after the pop/rem). Reads of a
// missing key raise "keymiss" (db.c lookupKey): gearstest raises it for GET only.
//
// Approximations (Redis decides these from data the reply does not show): ZADD raises "zadd" whenever
// it succeeds (Redis: only when something was added or updated); SETRANGE/APPEND raise their event
// always; SET with GET raises "set" unless its reply says that NX/XX refused it (the nil reply of NX).
// FLUSHALL/FLUSHDB raise no keyspace event in Redis, and none here.
//
// before is called before the command runs (existence of the keys whose prior existence decides the
// events: DEL's keys); exists tells, after the command, whether a key is still there.
type eventFacts struct {
	existed map[string]bool
	exists  func(key []byte) bool
}

// preKeys returns the keys whose existence before the command matters to its events.
func preKeys(name string, args [][]byte) [][]byte {
	switch name {
	case "DEL", "UNLINK":
		return args[1:]
	case "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE", "ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE",
		"ZRANGESTORE", "BITOP":
		if name == "BITOP" {
			if len(args) > 2 {
				return args[2:3]
			}
			return nil
		}
		return args[1:2]
	}
	return nil
}

// isWriteCommand reports whether the command can raise keyspace events (keymiss excepted).
func isWriteCommand(name string) bool {
	_, ok := eventCommands[name]
	return ok
}

// eventCommands lists the commands commandEvents knows (upper case).
var eventCommands = map[string]struct{}{}

func init() {
	for _, n := range strings.Fields(`SET SETNX SETEX PSETEX GETSET MSET MSETNX APPEND SETRANGE INCR DECR
		INCRBY DECRBY INCRBYFLOAT GETDEL GETEX SETBIT BITFIELD BITOP DEL UNLINK EXPIRE PEXPIRE EXPIREAT
		PEXPIREAT PERSIST RENAME RENAMENX COPY MOVE RESTORE SORT LPUSH RPUSH LPUSHX RPUSHX LINSERT LSET
		LPOP RPOP LTRIM LREM RPOPLPUSH LMOVE BLPOP BRPOP BRPOPLPUSH BLMOVE LMPOP BLMPOP HSET HMSET HSETNX
		HDEL HINCRBY HINCRBYFLOAT SADD SREM SPOP SMOVE SINTERSTORE SUNIONSTORE SDIFFSTORE ZADD ZINCRBY ZREM
		ZREMRANGEBYSCORE ZREMRANGEBYRANK ZREMRANGEBYLEX ZPOPMIN ZPOPMAX BZPOPMIN BZPOPMAX ZUNIONSTORE
		ZINTERSTORE ZDIFFSTORE ZRANGESTORE XADD XDEL XTRIM XSETID PFADD PFMERGE GEOADD`) {
		eventCommands[n] = struct{}{}
	}
}

// replyInt returns the integer of an integer reply.
func replyInt(raw []byte) (int64, bool) {
	if len(raw) < 4 || raw[0] != ':' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(bytes.TrimRight(raw[1:], "\r\n")), 10, 64)
	return n, err == nil
}

// replyNil reports a nil reply (RESP2 or RESP3).
func replyNil(raw []byte) bool { return isNilReply(raw) || bytes.HasPrefix(raw, []byte("*0\r\n")) }

func hasOpt(args [][]byte, opts ...string) bool {
	for _, a := range args {
		for _, o := range opts {
			if strings.EqualFold(string(a), o) {
				return true
			}
		}
	}
	return false
}

// commandEvents returns the keyspace events of a command that ran on the in-process store and
// replied raw (see the table's comment above).
func commandEvents(args [][]byte, raw []byte, f eventFacts) []keyEvent {
	if len(args) == 0 || len(raw) == 0 || raw[0] == '-' || raw[0] == '!' {
		return nil
	}
	name := strings.ToUpper(string(args[0]))
	var out []keyEvent
	add := func(ev string, key []byte) { out = append(out, keyEvent{ev, key}) }
	n, isInt := replyInt(raw)
	positive := isInt && n > 0
	key := func(i int) []byte {
		if i < len(args) {
			return args[i]
		}
		return nil
	}
	gone := func(k []byte) {
		if k != nil && f.exists != nil && !f.exists(k) {
			add("del", k)
		}
	}
	switch name {
	case "GET":
		if len(args) == 2 && isNilReply(raw) {
			add("keymiss", args[1])
		}
	case "SET":
		if replyNil(raw) && hasOpt(args[3:], "NX", "XX") && !hasOpt(args[3:], "GET") {
			return nil
		}
		if hasOpt(args[3:], "GET") && hasOpt(args[3:], "NX") && !isNilReply(raw) {
			return nil // NX refused: the key existed (its old value is the reply)
		}
		add("set", key(1))
		if hasOpt(args[3:], "EX", "PX", "EXAT", "PXAT") {
			add("expire", key(1))
		}
	case "SETNX":
		if positive {
			add("set", key(1))
		}
	case "SETEX", "PSETEX":
		add("set", key(1))
		add("expire", key(1))
	case "GETSET":
		add("set", key(1))
	case "MSET":
		for i := 1; i+1 < len(args); i += 2 {
			add("set", args[i])
		}
	case "MSETNX":
		if positive {
			for i := 1; i+1 < len(args); i += 2 {
				add("set", args[i])
			}
		}
	case "APPEND":
		add("append", key(1))
	case "SETRANGE":
		add("setrange", key(1))
	case "INCR", "DECR", "INCRBY", "DECRBY":
		add("incrby", key(1))
	case "INCRBYFLOAT":
		add("incrbyfloat", key(1))
	case "GETDEL":
		if !isNilReply(raw) {
			add("del", key(1))
		}
	case "GETEX":
		if !isNilReply(raw) {
			switch {
			case hasOpt(args[2:], "PERSIST"):
				add("persist", key(1))
			case hasOpt(args[2:], "EX", "PX", "EXAT", "PXAT"):
				add("expire", key(1))
			}
		}
	case "SETBIT", "BITFIELD":
		add("setbit", key(1))
	case "BITOP":
		if isInt && n == 0 {
			if f.existed[string(key(2))] {
				add("del", key(2))
			}
		} else {
			add("set", key(2))
		}
	case "DEL", "UNLINK":
		for _, k := range args[1:] {
			if f.existed[string(k)] {
				add("del", k)
				delete(f.existed, string(k)) // DEL k k deletes once
			}
		}
	case "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT":
		if positive {
			if f.exists != nil && !f.exists(key(1)) {
				add("del", key(1)) // a time in the past deletes the key
			} else {
				add("expire", key(1))
			}
		}
	case "PERSIST":
		if positive {
			add("persist", key(1))
		}
	case "RENAME", "RENAMENX":
		if name == "RENAME" || positive {
			add("rename_from", key(1))
			add("rename_to", key(2))
		}
	case "COPY":
		if positive {
			add("copy_to", key(2))
		}
	case "MOVE":
		if positive {
			add("move_from", key(1))
		}
	case "RESTORE":
		add("restore", key(1))
	case "SORT":
		for i := 2; i+1 < len(args); i++ {
			if strings.EqualFold(string(args[i]), "STORE") {
				if positive {
					add("sortstore", args[i+1])
				} else if f.exists != nil && !f.exists(args[i+1]) {
					add("del", args[i+1])
				}
			}
		}
	case "LPUSH", "RPUSH", "LPUSHX", "RPUSHX":
		if positive {
			add(strings.ToLower(strings.TrimSuffix(name, "X")), key(1))
		}
	case "LINSERT":
		if positive {
			add("linsert", key(1))
		}
	case "LSET":
		add("lset", key(1))
	case "LPOP", "RPOP":
		if !replyNil(raw) {
			add(strings.ToLower(name), key(1))
			gone(key(1))
		}
	case "LTRIM":
		add("ltrim", key(1))
		gone(key(1))
	case "LREM":
		if positive {
			add("lrem", key(1))
			gone(key(1))
		}
	case "RPOPLPUSH", "BRPOPLPUSH", "LMOVE", "BLMOVE":
		if replyNil(raw) {
			return nil
		}
		from, to := "rpop", "lpush"
		if name == "LMOVE" || name == "BLMOVE" {
			if strings.EqualFold(string(key(3)), "LEFT") {
				from = "lpop"
			}
			if strings.EqualFold(string(key(4)), "RIGHT") {
				to = "rpush"
			}
		}
		add(to, key(2))
		add(from, key(1))
		gone(key(1))
	case "BLPOP", "BRPOP", "LMPOP", "BLMPOP":
		if replyNil(raw) {
			return nil
		}
		v, err := parseRaw(raw)
		if err != nil || len(v.Arr) < 1 {
			return nil
		}
		k := v.Arr[0].Str
		ev := "lpop"
		switch name {
		case "BRPOP":
			ev = "rpop"
		case "LMPOP", "BLMPOP":
			if hasOpt(args, "RIGHT") {
				ev = "rpop"
			}
		}
		add(ev, k)
		gone(k)
	case "HSET", "HMSET":
		add("hset", key(1))
	case "HSETNX":
		if positive {
			add("hset", key(1))
		}
	case "HDEL":
		if positive {
			add("hdel", key(1))
			gone(key(1))
		}
	case "HINCRBY":
		add("hincrby", key(1))
	case "HINCRBYFLOAT":
		add("hincrbyfloat", key(1))
	case "SADD":
		if positive {
			add("sadd", key(1))
		}
	case "SREM":
		if positive {
			add("srem", key(1))
			gone(key(1))
		}
	case "SPOP":
		if !replyNil(raw) {
			add("spop", key(1))
			gone(key(1))
		}
	case "SMOVE":
		if positive {
			add("srem", key(1))
			gone(key(1))
			add("sadd", key(2))
		}
	case "SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE", "ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE",
		"ZRANGESTORE":
		if positive {
			add(strings.ToLower(name), key(1))
		} else if f.existed[string(key(1))] {
			add("del", key(1))
		}
	case "ZADD", "GEOADD":
		if hasOpt(args[2:], "INCR") {
			if !isNilReply(raw) {
				add("zincr", key(1))
			}
			return out
		}
		add("zadd", key(1))
	case "ZINCRBY":
		add("zincr", key(1))
	case "ZREM", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK", "ZREMRANGEBYLEX":
		if positive {
			add(strings.ToLower(name), key(1))
			gone(key(1))
		}
	case "ZPOPMIN", "ZPOPMAX":
		if !replyNil(raw) {
			add(strings.ToLower(name), key(1))
			gone(key(1))
		}
	case "BZPOPMIN", "BZPOPMAX":
		if replyNil(raw) {
			return nil
		}
		v, err := parseRaw(raw)
		if err != nil || len(v.Arr) < 1 {
			return nil
		}
		add(strings.ToLower(name[1:]), v.Arr[0].Str)
		gone(v.Arr[0].Str)
	case "XADD":
		if !isNilReply(raw) {
			add("xadd", key(1))
		}
	case "XDEL":
		if positive {
			add("xdel", key(1))
		}
	case "XTRIM":
		if positive {
			add("xtrim", key(1))
		}
	case "XSETID":
		add("xsetid", key(1))
	case "PFADD":
		if positive {
			add("pfadd", key(1))
		}
	case "PFMERGE":
		add("pfadd", key(1))
	}
	return out
}
