package gears

import (
	"context"
	"strings"
)

// PyStats is RG.PYSTATS: the Python interpreter's memory figures, in bytes.
type PyStats struct {
	// TotalAllocated is the total memory the interpreter allocated.
	TotalAllocated int64
	// PeakAllocated is the peak of allocated memory.
	PeakAllocated int64
	// CurrAllocated is the memory allocated now.
	CurrAllocated int64
}

// Requirement is one entry of RG.PYDUMPREQS (and of RG.PYDUMPSESSIONS VERBOSE).
type Requirement struct {
	// GearReqVersion is the requirement metadata's version.
	GearReqVersion int64
	// Name is the requirement as given, e.g. "redis==4.3.1".
	Name string
	// IsDownloaded reports whether the wheels were downloaded.
	IsDownloaded bool
	// IsInstalled reports whether the requirement is installed.
	IsInstalled bool
	// CompiledOs is the OS the wheels were built for.
	CompiledOs string
	// Wheels are the wheel files; nil when not downloaded (WheelsNote then says so).
	Wheels []string
	// WheelsNote is the server's text in place of the wheel list when there is none.
	WheelsNote string
	// Path is the requirement's installation directory.
	Path string
	// RefCount counts the sessions using the requirement.
	RefCount int64
	// IsInReqDictionary reports whether the requirement is in the server's requirement dictionary.
	IsInReqDictionary bool
}

// SessionInfo is one entry of RG.PYDUMPSESSIONS (1.2).
type SessionInfo struct {
	// ID is the session id.
	ID string
	// Description is the session's description; "" when none.
	Description string
	// RefCount is the session's reference count.
	RefCount int64
	// Linked is "primary", "temprary" (sic) or "None".
	Linked string
	// Dead reports whether the session was replaced and awaits its last executions.
	Dead bool
	// RequirementInstallationNeeded reports whether requirements are to be installed.
	RequirementInstallationNeeded bool
	// Requirements are the requirement names.
	Requirements []string
	// RequirementDetails are the requirements in full (VERBOSE only).
	RequirementDetails []Requirement
	// RegistrationIDs are the session's registration ids.
	RegistrationIDs []string
	// Registrations are the registrations in full (VERBOSE only; without PD).
	Registrations []Registration
	// Missing reports that a session named with SESSIONS does not exist; only ID is set then.
	Missing bool
}

// PyDumpSessionsOptions are the options of RG.PYDUMPSESSIONS. The zero value lists the live sessions.
type PyDumpSessionsOptions struct {
	// Verbose includes full requirement and registration entries.
	Verbose bool
	// Dead lists the replaced sessions that still have running executions instead of the live ones.
	Dead bool
	// Sessions restricts the reply to these session ids, in this order (missing ones have Missing set).
	Sessions []string
}

// ProfileSubcommand is RG.PYPROFILE's sub-command.
type ProfileSubcommand string

// RG.PYPROFILE sub-commands.
const (
	ProfileStats ProfileSubcommand = "STATS"
	ProfileReset ProfileSubcommand = "RESET"
)

// PyStats returns the interpreter's memory figures (RG.PYSTATS).
func (c *Client) PyStats(ctx context.Context) (*PyStats, error) {
	return newCmd(ctx, c.rdb, decodePyStats, "RG.PYSTATS").Result()
}

// PyStats queues RG.PYSTATS.
func (p *Pipeline) PyStats(ctx context.Context) *Cmd[*PyStats] {
	return newCmd(ctx, p.pipe, decodePyStats, "RG.PYSTATS")
}

func decodePyStats(v any) (*PyStats, error) {
	var s PyStats
	err := fields("PyStats", v, func(name string, val any) error {
		var err error
		switch name {
		case "TotalAllocated":
			s.TotalAllocated, err = asInt("PyStats.TotalAllocated", val)
		case "PeakAllocated":
			s.PeakAllocated, err = asInt("PyStats.PeakAllocated", val)
		case "CurrAllocated":
			s.CurrAllocated, err = asInt("PyStats.CurrAllocated", val)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// PyDumpReqs lists the requirements known to the shard (RG.PYDUMPREQS).
func (c *Client) PyDumpReqs(ctx context.Context) ([]Requirement, error) {
	return newCmd(ctx, c.rdb, decodeRequirements, "RG.PYDUMPREQS").Result()
}

// PyDumpReqs queues RG.PYDUMPREQS.
func (p *Pipeline) PyDumpReqs(ctx context.Context) *Cmd[[]Requirement] {
	return newCmd(ctx, p.pipe, decodeRequirements, "RG.PYDUMPREQS")
}

func decodeRequirements(v any) ([]Requirement, error) {
	a, err := asArray("[]Requirement", v)
	if err != nil {
		return nil, err
	}
	out := make([]Requirement, 0, len(a))
	for _, e := range a {
		r, err := decodeRequirement(e)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// decodeRequirement reads an 18-element (1.2) or 10-element (1.0) requirement entry.
func decodeRequirement(v any) (Requirement, error) {
	var r Requirement
	err := fields("Requirement", v, func(name string, val any) error {
		var err error
		switch name {
		case "GearReqVersion":
			r.GearReqVersion, err = asInt("Requirement.GearReqVersion", val)
		case "Name":
			r.Name, err = asString("Requirement.Name", val)
		case "IsDownloaded":
			r.IsDownloaded, err = asBool("Requirement.IsDownloaded", val)
		case "IsInstalled":
			r.IsInstalled, err = asBool("Requirement.IsInstalled", val)
		case "CompiledOs":
			r.CompiledOs, err = asString("Requirement.CompiledOs", val)
		case "Wheels":
			if s, ok := val.(string); ok {
				r.WheelsNote = s
				return nil
			}
			r.Wheels, err = asStrings("Requirement.Wheels", val)
		case "Path":
			r.Path, err = asString("Requirement.Path", val)
		case "RefCount":
			r.RefCount, err = asInt("Requirement.RefCount", val)
		case "IsInReqDictionary":
			r.IsInReqDictionary, err = asBool("Requirement.IsInReqDictionary", val)
		}
		return err
	})
	return r, err
}

// PyDumpSessions lists Python sessions (RG.PYDUMPSESSIONS, 1.2). opts may be nil.
func (c *Client) PyDumpSessions(ctx context.Context, opts *PyDumpSessionsOptions) ([]SessionInfo, error) {
	return pyDumpSessions(ctx, c.rdb, opts).Result()
}

// PyDumpSessions queues RG.PYDUMPSESSIONS.
func (p *Pipeline) PyDumpSessions(ctx context.Context, opts *PyDumpSessionsOptions) *Cmd[[]SessionInfo] {
	return pyDumpSessions(ctx, p.pipe, opts)
}

func pyDumpSessions(ctx context.Context, d doer, opts *PyDumpSessionsOptions) *Cmd[[]SessionInfo] {
	args := []any{"RG.PYDUMPSESSIONS"}
	if opts != nil {
		if opts.Verbose {
			args = append(args, "VERBOSE")
		}
		if opts.Dead {
			args = append(args, "DEAD")
		}
		if len(opts.Sessions) > 0 {
			args = append(args, "SESSIONS")
			for _, s := range opts.Sessions {
				args = append(args, s)
			}
		}
	}
	return newCmd(ctx, d, decodeSessions, args...)
}

func decodeSessions(v any) ([]SessionInfo, error) {
	a, err := asArray("[]SessionInfo", v)
	if err != nil {
		return nil, err
	}
	out := make([]SessionInfo, 0, len(a))
	for _, e := range a {
		// SESSIONS names an unknown session with the bulk string "Session <name> does not exists".
		if s, ok := e.(string); ok {
			name, found := strings.CutPrefix(s, "Session ")
			name, found2 := strings.CutSuffix(name, " does not exists")
			if !found || !found2 {
				return nil, decodeErr("SessionInfo", e, "expected a session entry")
			}
			out = append(out, SessionInfo{ID: name, Missing: true})
			continue
		}
		s, err := decodeSession(e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func decodeSession(v any) (SessionInfo, error) {
	var s SessionInfo
	err := fields("SessionInfo", v, func(name string, val any) error {
		var err error
		switch name {
		case "ID":
			s.ID, err = asString("SessionInfo.ID", val)
		case "sessionDescription":
			s.Description, err = asString("SessionInfo.Description", val)
		case "refCount":
			s.RefCount, err = asInt("SessionInfo.RefCount", val)
		case "linked", "Linked":
			s.Linked, err = asString("SessionInfo.Linked", val)
		case "dead", "TS":
			s.Dead, err = asBool("SessionInfo.Dead", val)
		case "requirementInstallationNeeded":
			s.RequirementInstallationNeeded, err = asBool("SessionInfo.RequirementInstallationNeeded", val)
		case "requirements":
			var a []any
			if a, err = asArray("SessionInfo.Requirements", val); err != nil {
				return err
			}
			for _, e := range a {
				if _, ok := e.([]any); ok { // VERBOSE: full entries
					r, err := decodeRequirement(e)
					if err != nil {
						return err
					}
					s.RequirementDetails = append(s.RequirementDetails, r)
					s.Requirements = append(s.Requirements, r.Name)
					continue
				}
				n, err := asString("SessionInfo.Requirements", e)
				if err != nil {
					return err
				}
				s.Requirements = append(s.Requirements, n)
			}
		case "registrations":
			var a []any
			if a, err = asArray("SessionInfo.Registrations", val); err != nil {
				return err
			}
			for _, e := range a {
				if _, ok := e.([]any); ok { // VERBOSE: full entries
					r, err := decodeRegistration(e)
					if err != nil {
						return err
					}
					s.Registrations = append(s.Registrations, r)
					s.RegistrationIDs = append(s.RegistrationIDs, r.ID)
					continue
				}
				id, err := asString("SessionInfo.Registrations", e)
				if err != nil {
					return err
				}
				s.RegistrationIDs = append(s.RegistrationIDs, id)
			}
		}
		return err
	})
	return s, err
}

// PyProfile runs RG.PYPROFILE (1.2): ProfileStats returns the session's cProfile statistics text
// (args may hold an order-by key, which the server accepts but ignores), ProfileReset clears them and
// returns "OK". Statistics are collected only while the ProfileExecutions config is 1.
func (c *Client) PyProfile(ctx context.Context, sub ProfileSubcommand, sessionID string, args ...string) (string, error) {
	return pyProfile(ctx, c.rdb, sub, sessionID, args).Result()
}

// PyProfile queues RG.PYPROFILE.
func (p *Pipeline) PyProfile(ctx context.Context, sub ProfileSubcommand, sessionID string, args ...string) *Cmd[string] {
	return pyProfile(ctx, p.pipe, sub, sessionID, args)
}

func pyProfile(ctx context.Context, d doer, sub ProfileSubcommand, sessionID string, args []string) *Cmd[string] {
	all := []any{"RG.PYPROFILE", string(sub), sessionID}
	for _, a := range args {
		all = append(all, a)
	}
	return newCmd(ctx, d, func(v any) (string, error) { return asString("PyProfile", v) }, all...)
}
