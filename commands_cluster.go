package gears

import "context"

// ClusterInfo is RG.INFOCLUSTER. Stand-alone servers answer "no cluster mode": Cluster is then false and
// the other fields are empty.
type ClusterInfo struct {
	// Cluster reports whether the server runs in cluster mode.
	Cluster bool
	// MyID is this shard's id.
	MyID string
	// MyRunID is this shard's run id.
	MyRunID string
	// Nodes are the cluster's shards.
	Nodes []ClusterNode
}

// ClusterNode is one shard of RG.INFOCLUSTER.
type ClusterNode struct {
	// ID is the shard id.
	ID string
	// IP is the shard's address.
	IP string
	// Port is the shard's port.
	Port int64
	// UnixSocket is the shard's unix socket, "None" if none.
	UnixSocket string
	// RunID is the shard's run id; "" when unknown.
	RunID string
	// MinHslot is the first hash slot the shard owns.
	MinHslot int64
	// MaxHslot is the last hash slot the shard owns.
	MaxHslot int64
	// PendingMessages counts the messages waiting to be sent to the shard.
	PendingMessages int64
}

// ConfigValue is one element of RG.CONFIGGET or RG.CONFIGSET, paired with the key it answers.
type ConfigValue struct {
	// Key is the configuration key as asked.
	Key string
	// Value is the value (CONFIGGET: int64, string or []any) or the status (CONFIGSET: "OK", "OK - value
	// was saved in extra config dictionary"); nil when Err is set.
	Value any
	// Err is the per-key error element, e.g. "(error) Unsupported config parameter: x".
	Err error
}

// Plugin is one entry of RG.DUMPPLUGINS.
type Plugin struct {
	// Name is the plugin's name, e.g. "GearsPythonPlugin".
	Name string
	// Version is the plugin's version number.
	Version int64
}

// InfoCluster describes the cluster as RedisGears sees it (RG.INFOCLUSTER).
func (c *Client) InfoCluster(ctx context.Context) (*ClusterInfo, error) {
	return newCmd(ctx, c.rdb, decodeClusterInfo, "RG.INFOCLUSTER").Result()
}

// InfoCluster queues RG.INFOCLUSTER.
func (p *Pipeline) InfoCluster(ctx context.Context) *Cmd[*ClusterInfo] {
	return newCmd(ctx, p.pipe, decodeClusterInfo, "RG.INFOCLUSTER")
}

// decodeClusterInfo reads "no cluster mode" or ["MyId", id, "MyRunId", runid, [node…]].
func decodeClusterInfo(v any) (*ClusterInfo, error) {
	if s, ok := v.(string); ok {
		if s == "no cluster mode" {
			return &ClusterInfo{}, nil
		}
		return nil, decodeErr("ClusterInfo", v, `expected "no cluster mode" or the cluster array`)
	}
	a, err := asArray("ClusterInfo", v)
	if err != nil {
		return nil, err
	}
	info := &ClusterInfo{Cluster: true}
	for i := 0; i < len(a); i++ {
		name, isName := a[i].(string)
		switch {
		case isName && name == "MyId" && i+1 < len(a):
			i++
			if info.MyID, err = asString("ClusterInfo.MyID", a[i]); err != nil {
				return nil, err
			}
		case isName && name == "MyRunId" && i+1 < len(a):
			i++
			if info.MyRunID, err = asString("ClusterInfo.MyRunID", a[i]); err != nil {
				return nil, err
			}
		default:
			nodes, err := asArray("ClusterInfo.Nodes", a[i])
			if err != nil {
				return nil, err
			}
			for _, n := range nodes {
				node, err := decodeClusterNode(n)
				if err != nil {
					return nil, err
				}
				info.Nodes = append(info.Nodes, node)
			}
		}
	}
	return info, nil
}

func decodeClusterNode(v any) (ClusterNode, error) {
	var n ClusterNode
	err := fields("ClusterNode", v, func(name string, val any) error {
		var err error
		switch name {
		case "id":
			n.ID, err = asString("ClusterNode.ID", val)
		case "ip":
			n.IP, err = asString("ClusterNode.IP", val)
		case "port":
			n.Port, err = asInt("ClusterNode.Port", val)
		case "unixSocket":
			n.UnixSocket, err = asString("ClusterNode.UnixSocket", val)
		case "runid":
			n.RunID, err = asString("ClusterNode.RunID", val)
		case "minHslot":
			n.MinHslot, err = asInt("ClusterNode.MinHslot", val)
		case "maxHslot":
			n.MaxHslot, err = asInt("ClusterNode.MaxHslot", val)
		case "pendingMessages":
			n.PendingMessages, err = asInt("ClusterNode.PendingMessages", val)
		}
		return err
	})
	return n, err
}

// RefreshCluster makes RedisGears re-read the cluster topology (RG.REFRESHCLUSTER).
func (c *Client) RefreshCluster(ctx context.Context) error {
	return newCmd(ctx, c.rdb, decodeOK, "RG.REFRESHCLUSTER").Err()
}

// RefreshCluster queues RG.REFRESHCLUSTER.
func (p *Pipeline) RefreshCluster(ctx context.Context) *Cmd[string] {
	return newCmd(ctx, p.pipe, decodeOK, "RG.REFRESHCLUSTER")
}

// ConfigGet reads configuration values (RG.CONFIGGET), one ConfigValue per key. Built-in names are
// case-sensitive on the server; an unknown key comes back with Err set, not as an error of the call.
func (c *Client) ConfigGet(ctx context.Context, keys ...string) ([]ConfigValue, error) {
	return configGet(ctx, c.rdb, keys).Result()
}

// ConfigGet queues RG.CONFIGGET.
func (p *Pipeline) ConfigGet(ctx context.Context, keys ...string) *Cmd[[]ConfigValue] {
	return configGet(ctx, p.pipe, keys)
}

func configGet(ctx context.Context, d doer, keys []string) *Cmd[[]ConfigValue] {
	args := make([]any, 0, 1+len(keys))
	args = append(args, "RG.CONFIGGET")
	for _, k := range keys {
		args = append(args, k)
	}
	return newCmd(ctx, d, func(v any) ([]ConfigValue, error) { return decodeConfig(v, keys) }, args...)
}

// ConfigSet sets configuration values (RG.CONFIGSET key value [key value …]), one ConfigValue per key:
// Value is the status ("OK", or "OK - value was saved in extra config dictionary" for keys RedisGears
// does not know), Err the per-key error element.
func (c *Client) ConfigSet(ctx context.Context, keyvals ...string) ([]ConfigValue, error) {
	return configSet(ctx, c.rdb, keyvals).Result()
}

// ConfigSet queues RG.CONFIGSET.
func (p *Pipeline) ConfigSet(ctx context.Context, keyvals ...string) *Cmd[[]ConfigValue] {
	return configSet(ctx, p.pipe, keyvals)
}

func configSet(ctx context.Context, d doer, keyvals []string) *Cmd[[]ConfigValue] {
	args := make([]any, 0, 1+len(keyvals))
	args = append(args, "RG.CONFIGSET")
	var keys []string
	for i, kv := range keyvals {
		args = append(args, kv)
		if i%2 == 0 {
			keys = append(keys, kv)
		}
	}
	return newCmd(ctx, d, func(v any) ([]ConfigValue, error) { return decodeConfig(v, keys) }, args...)
}

func decodeConfig(v any, keys []string) ([]ConfigValue, error) {
	a, err := asArray("[]ConfigValue", v)
	if err != nil {
		return nil, err
	}
	out := make([]ConfigValue, len(a))
	for i, e := range a {
		if i < len(keys) {
			out[i].Key = keys[i]
		}
		if err := asError(e); err != nil {
			out[i].Err = err
			continue
		}
		out[i].Value = e
	}
	return out, nil
}

// DumpPlugins lists the loaded plugins (RG.DUMPPLUGINS, 1.2).
func (c *Client) DumpPlugins(ctx context.Context) ([]Plugin, error) {
	return newCmd(ctx, c.rdb, decodePlugins, "RG.DUMPPLUGINS").Result()
}

// DumpPlugins queues RG.DUMPPLUGINS.
func (p *Pipeline) DumpPlugins(ctx context.Context) *Cmd[[]Plugin] {
	return newCmd(ctx, p.pipe, decodePlugins, "RG.DUMPPLUGINS")
}

func decodePlugins(v any) ([]Plugin, error) {
	a, err := asArray("[]Plugin", v)
	if err != nil {
		return nil, err
	}
	out := make([]Plugin, 0, len(a))
	for _, e := range a {
		pa, err := asArray("Plugin", e)
		if err != nil {
			return nil, err
		}
		if len(pa) != 2 {
			return nil, decodeErr("Plugin", e, "expected [name, version]")
		}
		var p Plugin
		if p.Name, err = asString("Plugin.Name", pa[0]); err != nil {
			return nil, err
		}
		if p.Version, err = asInt("Plugin.Version", pa[1]); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
