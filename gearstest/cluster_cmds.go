package gearstest

import (
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"
)

// Redis Cluster's error texts (cluster.c clusterRedirectClient, getNodeByQuery).
const (
	msgCrossSlot       = "CROSSSLOT Keys in request don't hash to the same slot"
	msgSelectInCluster = "ERR SELECT is not allowed in cluster mode"
)

// msgMoved is the redirection of a command whose key's slot another shard owns.
func msgMoved(slot int, addr string) string { return "MOVED " + strconv.Itoa(slot) + " " + addr }

// clusterRoute runs first for every command of a shard (conn.go serveCommand): it answers CLUSTER,
// READONLY, READWRITE and ASKING, and refuses a keyed command whose keys hash to several slots
// (CROSSSLOT) or to a slot of another shard (MOVED), as Redis' processCommand does before running
// anything. It reports whether it answered. Inside MULTI a refused command also makes EXEC fail
// (EXECABORT), and EXEC checks that every queued command's keys share one slot of this shard (on a
// refusal the transaction is discarded), as Redis does.
func (s *Server) clusterRoute(conn redcon.Conn, c *client, name string, args [][]byte) bool {
	if !c.inMulti {
		switch name {
		case "CLUSTER":
			c.write(conn, s.clusterCommand(c, args))
			return true
		case "READONLY", "READWRITE", "ASKING":
			if len(args) != 1 {
				conn.WriteError(msgWrongArity(strings.ToLower(name)))
			} else {
				conn.WriteString("OK")
			}
			return true
		case "SELECT":
			if len(args) == 2 && string(args[1]) != "0" {
				conn.WriteError(msgSelectInCluster)
				return true
			}
		}
	}
	var keys [][]byte
	if name == "EXEC" && c.inMulti {
		for _, q := range c.txQueue {
			keys = append(keys, s.commandKeys(strings.ToUpper(string(q[0])), q)...)
		}
	} else {
		keys = s.commandKeys(name, args)
	}
	if len(keys) == 0 {
		return false
	}
	slot := keySlot(keys[0])
	msg := ""
	for _, k := range keys[1:] {
		if keySlot(k) != slot {
			msg = msgCrossSlot
			break
		}
	}
	sh := s.shard
	if msg == "" {
		if slot >= sh.first && slot <= sh.last {
			return false
		}
		msg = msgMoved(slot, sh.cl.addr(sh.owner(slot)))
	}
	if c.inMulti {
		if name == "EXEC" {
			c.resetMulti()
			if be, err := s.backend(c); err == nil {
				_, _ = be.do([]byte("UNWATCH"))
			}
		} else {
			c.multiErr = true
		}
	}
	conn.WriteError(msg)
	return true
}

// clusterCommand answers CLUSTER's subcommands for this shard's view of the cluster.
func (s *Server) clusterCommand(c *client, args [][]byte) value {
	if len(args) < 2 {
		return errValue(msgWrongArity("cluster"))
	}
	sub := strings.ToUpper(string(args[1]))
	want := map[string]int{"SLOTS": 2, "SHARDS": 2, "NODES": 2, "INFO": 2, "MYID": 2, "KEYSLOT": 3}
	n, ok := want[sub]
	if !ok {
		return errValue("ERR unknown subcommand '" + string(args[1]) + "'. Try CLUSTER HELP.")
	}
	if len(args) != n {
		return errValue(msgWrongArity("cluster|" + strings.ToLower(sub)))
	}
	cl := s.shard.cl
	switch sub {
	case "KEYSLOT":
		return integer(int64(keySlot(args[2])))
	case "MYID":
		return bulk(s.shard.id)
	case "INFO":
		return verbatim(cl.info(s.shard))
	case "NODES":
		return verbatim(cl.nodes(s.shard))
	case "SLOTS":
		return cl.slots(c.resp3)
	default: // SHARDS
		return cl.shardsReply(c.resp3)
	}
}

// info is CLUSTER INFO's text (Redis 7.0's fields, a healthy cluster that never had a failover).
func (cl *Cluster) info(me *clusterShard) string {
	n := strconv.Itoa(len(cl.shards))
	return "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n" +
		"cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:" + n + "\r\ncluster_size:" + n +
		"\r\ncluster_current_epoch:" + n + "\r\ncluster_my_epoch:" + strconv.Itoa(me.index+1) +
		"\r\ncluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n" +
		"total_cluster_links_buffer_limit_exceeded:0\r\n"
}

// nodes is CLUSTER NODES' text: one line per shard, "<id> <ip:port@cport> <flags> <master> <ping-sent>
// <pong-recv> <config-epoch> <link-state> <slots>", the cluster bus port being port+10000 as in Redis.
func (cl *Cluster) nodes(me *clusterShard) string {
	var b strings.Builder
	pong := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for i, r := range cl.ranges {
		addr := cl.addr(i)
		cport := 0
		if _, p, err := splitPort(addr); err == nil && p+10000 <= 65535 {
			cport = p + 10000
		}
		flags, ping := "master", "0 "+pong
		if i == me.index {
			flags, ping = "myself,master", "0 0"
		}
		b.WriteString(shardID(i) + " " + addr + "@" + strconv.Itoa(cport) + " " + flags + " - " + ping + " " +
			strconv.Itoa(i+1) + " connected " + slotRange(r) + "\n")
	}
	return b.String()
}

func slotRange(r [2]int) string {
	if r[0] == r[1] {
		return strconv.Itoa(r[0])
	}
	return strconv.Itoa(r[0]) + "-" + strconv.Itoa(r[1])
}

// splitPort returns an address' host and numeric port.
func splitPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.Atoi(addr[i+1:])
	return strings.Trim(addr[:max(i, 0)], "[]"), p, err
}

// slots is CLUSTER SLOTS: [first, last, [ip, port, id, {}]] per shard, in slot order (Redis 7.0 adds
// the fourth node element, a map of further endpoints, empty here).
func (cl *Cluster) slots(resp3 bool) value {
	out := make([]value, len(cl.ranges))
	for i, r := range cl.ranges {
		host, port, _ := splitPort(cl.addr(i))
		out[i] = array(integer(int64(r[0])), integer(int64(r[1])),
			array(bulk(host), integer(int64(port)), bulk(shardID(i)), emptyMap()))
	}
	return array(out...)
}

// shardsReply is CLUSTER SHARDS (Redis 7.0): per shard a map {slots: [first, last], nodes: [{id, port,
// ip, endpoint, role, replication-offset, health}]}.
func (cl *Cluster) shardsReply(resp3 bool) value {
	out := make([]value, len(cl.ranges))
	for i, r := range cl.ranges {
		host, port, _ := splitPort(cl.addr(i))
		node := mapValue(
			bulk("id"), bulk(shardID(i)), bulk("port"), integer(int64(port)), bulk("ip"), bulk(host),
			bulk("endpoint"), bulk(host), bulk("role"), bulk("master"), bulk("replication-offset"), integer(0),
			bulk("health"), bulk("online"))
		out[i] = mapValue(bulk("slots"), array(integer(int64(r[0])), integer(int64(r[1]))),
			bulk("nodes"), array(node))
	}
	return array(out...)
}

// mapValue is a map reply of the pairs kv (key, value, …).
func mapValue(kv ...value) value { return value{Kind: kindMap, Arr: nonNil(kv)} }

// emptyMap is a map reply without pairs.
func emptyMap() value { return value{Kind: kindMap, Arr: []value{}} }

// verbatim is a verbatim text reply (RESP3 "=…txt:"), a bulk string for RESP2.
func verbatim(s string) value { return value{Kind: kindVerb, Str: []byte(s)} }

// cmdInfoCluster implements RG.INFOCLUSTER (src/cluster.c Cluster_GetClusterInfo): "no cluster mode"
// stand-alone; on a shard ["MyId", id, "MyRunId", runid, [node…]] with 16 elements per node, in slot
// order. Every shard knows the others' run ids (RedisGears learns them with its hello message).
func cmdInfoCluster(s *Server, _ *client, _ [][]byte) value {
	if s.shard == nil {
		return bulk(msgNoClusterMode)
	}
	cl := s.shard.cl
	nodes := make([]value, len(cl.ranges))
	for i, r := range cl.ranges {
		host, port, _ := splitPort(cl.addr(i))
		nodes[i] = array(bulk("id"), bulk(shardID(i)), bulk("ip"), bulk(host), bulk("port"), integer(int64(port)),
			bulk("unixSocket"), bulk("None"), bulk("runid"), bulk(cl.runIDs[i]), bulk("minHslot"), integer(int64(r[0])),
			bulk("maxHslot"), integer(int64(r[1])), bulk("pendingMessages"), integer(0))
	}
	return array(bulk("MyId"), bulk(s.shard.id), bulk("MyRunId"), bulk(cl.runIDs[s.shard.index]), array(nodes...))
}
