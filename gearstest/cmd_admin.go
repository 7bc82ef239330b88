package gearstest

// okHandler replies OK (RG.REFRESHCLUSTER: nothing to refresh outside a cluster).
func okHandler(*Server, *client, [][]byte) value { return status("OK") }

// cmdConfigGet implements RG.CONFIGGET.
func cmdConfigGet(s *Server, c *client, args [][]byte) value {
	return s.state.cfg.get(args[1:])
}

// cmdConfigSet implements RG.CONFIGSET and tells the worker the values that changed.
func cmdConfigSet(s *Server, c *client, args [][]byte) value {
	v, changed := s.state.cfg.set(args[1:])
	// A restarting worker gets the whole configuration in its init message.
	if len(changed) > 0 {
		if wk := s.currentWorker(); wk != nil {
			for _, kv := range changed {
				_ = wk.send(bulk("config"), bulk(kv[0]), bulk(kv[1]))
			}
		}
	}
	return v
}

// cmdDumpPlugins implements RG.DUMPPLUGINS: the Python plugin of RedisGears 1.2.13.
func cmdDumpPlugins(s *Server, c *client, args [][]byte) value {
	return array(array(bulk("GearsPythonPlugin"), integer(10213)))
}

// cmdNetworkTest implements RG.NETWORKTEST, which crashes a real RedisGears that is not in a cluster
// (C1). On a shard of a cluster it sends a test message to the other shards (which print "Got test
// network message" to their stdout) and replies OK (src/module.c Command_NetworkTest); gearstest's
// shards have no message bus, so it only replies.
func cmdNetworkTest(s *Server, c *client, args [][]byte) value {
	if s.shard != nil {
		return status("OK")
	}
	return s.hazardError("C1", "")
}
