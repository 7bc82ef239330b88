package gearstest

import (
	"bytes"
	"strconv"
	"strings"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// crc16 is CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum Redis Cluster
// hashes keys with (cluster.c keyHashSlot, crc16.c).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot returns the hash slot of key: CRC16 of the key, or of its hash tag (the part between the
// first '{' and the next '}', when that part is not empty), modulo 16384.
func keySlot(key []byte) int {
	if open := bytes.IndexByte(key, '{'); open >= 0 {
		if n := bytes.IndexByte(key[open+1:], '}'); n > 0 {
			key = key[open+1 : open+1+n]
		}
	}
	return int(crc16(key) & (clusterSlots - 1))
}

// splitSlots divides the 16384 slots among n shards as `redis-cli --cluster create` does
// (redis-cli.c clusterManagerCommandCreate, float32 arithmetic included): 3 shards own 0-5460,
// 5461-10922 and 10923-16383.
func splitSlots(n int) [][2]int {
	per := float32(clusterSlots) / float32(n)
	out := make([][2]int, n)
	first, cursor := 0, float32(0)
	for i := 0; i < n; i++ {
		last := int(roundHalfAway(cursor + per - 1))
		if last > clusterSlots || i == n-1 {
			last = clusterSlots - 1
		}
		if last < first {
			last = first
		}
		out[i] = [2]int{first, last}
		first = last + 1
		cursor += per
	}
	return out
}

// roundHalfAway is C's lround for the non-negative values splitSlots uses.
func roundHalfAway(f float32) int64 { return int64(f + 0.5) }

// slotTag returns what hashtag() answers on a shard whose first slot is slot: a string whose slot is
// slot. RedisGears takes it from a fixed table (src/slots_table.c: "06S" for slot 0, "1OV" for 5461,
// "4BE" for 10923) whose strings follow no rule gearstest could derive; gearstest keeps "06S" for slot
// 0 (the stand-alone answer, shard 0 of every cluster) and otherwise computes the first string of
// [0-9A-Za-z] in order of length, then of bytes, whose slot is slot. Code that uses the tag as
// 'key{%s}' % hashtag() sees no difference.
func slotTag(slot int) string {
	if slot == 0 {
		return "06S"
	}
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	buf := make([]byte, 0, 4)
	var try func(n int) bool
	try = func(n int) bool {
		if len(buf) == n {
			return int(crc16(buf)&(clusterSlots-1)) == slot
		}
		for i := 0; i < len(alphabet); i++ {
			buf = append(buf, alphabet[i])
			if try(n) {
				return true
			}
			buf = buf[:len(buf)-1]
		}
		return false
	}
	for n := 1; n <= 4; n++ {
		if try(n) {
			return string(buf)
		}
	}
	return "{" + strconv.Itoa(slot) + "}" // not reached: 4 characters reach every slot
}

// keySpec is where a command's keys are, from the COMMAND table: args[first], args[first+step], …
// up to args[last] (last < 0 counts from the end); movable marks commands whose keys depend on
// their arguments (EVAL's numkeys, XREAD's STREAMS, …).
type keySpec struct {
	arity             int // Redis' arity: n exactly, -n at least n (the name included)
	first, last, step int
	movable           bool
}

// commandKeys returns the keys a command names, for the cluster's slot checks. The positions come
// from the server's COMMAND table (the in-process store's table plus the RG.* entries, command.go),
// the same table a ClusterClient reads to route; commands flagged movablekeys are parsed here the way
// Redis' getkeys procedures do for the common ones (EVAL/FCALL numkeys, XREAD/XREADGROUP STREAMS,
// Z*STORE/ZUNION/ZINTER/ZDIFF/SINTERCARD/LMPOP/ZMPOP numkeys, SORT, MIGRATE); other movablekeys
// commands are not checked (they run where they are sent).
func (s *Server) commandKeys(name string, args [][]byte) [][]byte {
	sh := s.shard
	sh.specsOnce.Do(func() {
		s.commands.once.Do(s.loadCommandTable)
		sh.specs = keySpecs(s.commands.entries)
	})
	sp, ok := sh.specs[strings.ToLower(name)]
	if !ok || (sp.arity > 0 && len(args) != sp.arity) || (sp.arity < 0 && len(args) < -sp.arity) {
		return nil // the command's own arity error comes first, as in Redis' processCommand
	}
	if sp.movable {
		return movableKeys(strings.ToUpper(name), args)
	}
	if sp.first <= 0 || sp.first >= len(args) {
		return nil
	}
	last := sp.last
	if last < 0 {
		last = len(args) + last
	}
	if last >= len(args) {
		last = len(args) - 1
	}
	step := sp.step
	if step <= 0 {
		step = 1
	}
	var keys [][]byte
	for i := sp.first; i <= last; i += step {
		keys = append(keys, args[i])
	}
	return keys
}

// numKeysAt returns the keys counted by the numkeys argument at args[at] (the keys follow it); nil
// when it is missing or not a number (the command itself then answers the error).
func numKeysAt(args [][]byte, at int) [][]byte {
	if at >= len(args) {
		return nil
	}
	n, err := strconv.Atoi(string(args[at]))
	if err != nil || n <= 0 || at+1+n > len(args) {
		return nil
	}
	return args[at+1 : at+1+n]
}

func movableKeys(name string, args [][]byte) [][]byte {
	switch name {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
		return numKeysAt(args, 2)
	case "ZUNION", "ZINTER", "ZDIFF", "SINTERCARD", "ZINTERCARD", "LMPOP", "ZMPOP":
		return numKeysAt(args, 1)
	case "BLMPOP", "BZMPOP":
		return numKeysAt(args, 2)
	case "ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE":
		if len(args) < 2 {
			return nil
		}
		return append([][]byte{args[1]}, numKeysAt(args, 2)...)
	case "SORT", "SORT_RO":
		if len(args) < 2 {
			return nil
		}
		return args[1:2]
	case "XREAD", "XREADGROUP":
		for i := 1; i < len(args); i++ {
			if strings.EqualFold(string(args[i]), "STREAMS") {
				rest := args[i+1:]
				return rest[:len(rest)/2]
			}
		}
	case "MIGRATE":
		if len(args) > 3 && len(args[3]) > 0 {
			return args[3:4]
		}
		for i := 6; i < len(args); i++ {
			if strings.EqualFold(string(args[i]), "KEYS") {
				return args[i+1:]
			}
		}
	}
	return nil
}

// keySpecs reads the key positions of every entry of a COMMAND table.
func keySpecs(entries []value) map[string]keySpec {
	out := make(map[string]keySpec, len(entries))
	for _, e := range entries {
		if len(e.Arr) < 6 {
			continue
		}
		sp := keySpec{arity: int(e.Arr[1].Int), first: int(e.Arr[3].Int), last: int(e.Arr[4].Int), step: int(e.Arr[5].Int)}
		for _, f := range e.Arr[2].Arr {
			if strings.EqualFold(f.String(), "movablekeys") {
				sp.movable = true
			}
		}
		out[strings.ToLower(e.Arr[0].String())] = sp
	}
	return out
}
