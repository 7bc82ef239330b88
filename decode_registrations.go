package gears

import (
	"strconv"
	"strings"
)

// decodeRegistrations reads RG.DUMPREGISTRATIONS: an array of registration entries.
func decodeRegistrations(v any) ([]Registration, error) {
	a, err := asArray("[]Registration", v)
	if err != nil {
		return nil, err
	}
	out := make([]Registration, 0, len(a))
	for _, e := range a {
		r, err := decodeRegistration(e)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// decodeRegistration reads one entry: 12 elements on 1.2, 10 on 1.0 (no ExecutionThreadPool) and in
// RG.PYDUMPSESSIONS VERBOSE (no PD). Fields are read by name, so any of these shapes works.
func decodeRegistration(v any) (Registration, error) {
	var r Registration
	err := fields("Registration", v, func(name string, val any) error {
		var err error
		switch name {
		case "id":
			r.ID, err = asString("Registration.ID", val)
		case "reader":
			r.Reader, err = asString("Registration.Reader", val)
		case "desc":
			r.Desc, err = asString("Registration.Desc", val)
		case "RegistrationData":
			if val != nil {
				r.Data, err = decodeRegistrationData(val)
			}
		case "PD":
			r.PD, err = asString("Registration.PD", val)
			if err == nil && r.PD != "" {
				r.Session = ParsePrivateData(r.PD)
			}
		case "ExecutionThreadPool":
			r.ExecutionThreadPool, err = asString("Registration.ExecutionThreadPool", val)
		}
		return err
	})
	return r, err
}

// decodeRegistrationData reads the reader-specific block: 20 (1.2 Command/Keys), 26 (1.2 Stream), 14
// (1.0 Command/Keys) or 16 (1.0 Stream) elements.
func decodeRegistrationData(v any) (RegistrationData, error) {
	var d RegistrationData
	err := fields("RegistrationData", v, func(name string, val any) error {
		var err error
		switch name {
		case "mode":
			d.Mode, err = asString("RegistrationData.Mode", val)
		case "numTriggered":
			d.NumTriggered, err = asInt("RegistrationData.NumTriggered", val)
		case "numSuccess":
			d.NumSuccess, err = asInt("RegistrationData.NumSuccess", val)
		case "numFailures":
			d.NumFailures, err = asInt("RegistrationData.NumFailures", val)
		case "numAborted":
			d.NumAborted, err = asInt("RegistrationData.NumAborted", val)
		case "lastRunDurationMS":
			d.LastRunDurationMS, err = asInt("RegistrationData.LastRunDurationMS", val)
		case "totalRunDurationMS":
			d.TotalRunDurationMS, err = asInt("RegistrationData.TotalRunDurationMS", val)
		case "avgRunDurationMS":
			d.AvgRunDurationMS, err = asFloat("RegistrationData.AvgRunDurationMS", val)
		case "lastEstimatedLagMS":
			d.LastEstimatedLagMS, err = asInt("RegistrationData.LastEstimatedLagMS", val)
		case "avgEstimatedLagMS":
			d.AvgEstimatedLagMS, err = asFloat("RegistrationData.AvgEstimatedLagMS", val)
		case "lastError":
			d.LastError, err = lastErrorText(val)
		case "args":
			d.Args, err = decodeRegistrationArgs(val)
		case "status":
			d.Status, err = asString("RegistrationData.Status", val)
		}
		return err
	})
	return d, err
}

// lastErrorText reads lastError, which is a bulk string or nil (never an error element, but be lenient).
func lastErrorText(v any) (string, error) {
	if e := asError(v); e != nil {
		return e.Error(), nil
	}
	return asString("RegistrationData.LastError", v)
}

func decodeRegistrationArgs(v any) (RegistrationArgs, error) {
	a := RegistrationArgs{Raw: map[string]any{}}
	if v == nil {
		return a, nil
	}
	err := fields("RegistrationArgs", v, func(name string, val any) error {
		a.Raw[name] = val
		var err error
		switch name {
		case "trigger":
			a.Trigger, err = asString("RegistrationArgs.Trigger", val)
		case "inorder":
			a.InOrder, err = asBool("RegistrationArgs.InOrder", val)
		case "regex":
			a.Regex, err = asString("RegistrationArgs.Regex", val)
		case "eventTypes":
			a.EventTypes, err = asStrings("RegistrationArgs.EventTypes", val)
		case "keyTypes":
			a.KeyTypes, err = asStrings("RegistrationArgs.KeyTypes", val)
		case "hookCommands":
			a.HookCommands, err = asStrings("RegistrationArgs.HookCommands", val)
		case "batchSize":
			a.BatchSize, err = asInt("RegistrationArgs.BatchSize", val)
		case "durationMS":
			a.DurationMS, err = asInt("RegistrationArgs.DurationMS", val)
		case "stream":
			a.Stream, err = asString("RegistrationArgs.Stream", val)
		case "trimStream":
			a.TrimStream, err = asBool("RegistrationArgs.TrimStream", val)
		case "onFailedPolicy":
			a.OnFailedPolicy, err = asString("RegistrationArgs.OnFailedPolicy", val)
		case "retryInterval":
			a.RetryInterval, err = asInt("RegistrationArgs.RetryInterval", val)
		}
		return err
	})
	return a, err
}

// ParsePrivateData parses the PD string of a registration. RedisGears prints it with sprintf, not as
// JSON or Python: 1.2 writes
//
//	{'sessionName':'<id>', 'sessionDescription':'<desc or null>', 'refCount': 1, 'linkedTo': primary,
//	 'dead': false, 'isInstallationNeeded':0, 'registrationsList':['<id>'], 'depsList':[…]}
//
// and 1.0 writes {'sessionId':'<id>', 'depsList':[…]}. Quotes inside values are not escaped by the
// server, so a quoted value ends at a quote followed by ',', ']' or '}'. Unknown keys are ignored and a
// text that cannot be parsed yields what was read up to that point.
func ParsePrivateData(pd string) PrivateData {
	var out PrivateData
	p := pdParser{s: pd}
	m, _ := p.value().(map[string]any)
	for k, v := range m {
		switch k {
		case "sessionName", "sessionId":
			out.SessionName, _ = v.(string)
		case "sessionDescription":
			out.SessionDescription, _ = v.(string)
			if out.SessionDescription == "null" {
				out.SessionDescription = ""
			}
		case "refCount":
			out.RefCount, _ = v.(int64)
		case "linkedTo":
			out.LinkedTo, _ = v.(string)
		case "dead":
			out.Dead = v == "true"
		case "isInstallationNeeded":
			n, _ := v.(int64)
			out.IsInstallationNeeded = n != 0
		case "registrationsList":
			for _, e := range asList(v) {
				if s, ok := e.(string); ok {
					out.Registrations = append(out.Registrations, s)
				}
			}
		case "depsList":
			for _, e := range asList(v) {
				dm, _ := e.(map[string]any)
				var d Dependency
				d.Name, _ = dm["name"].(string)
				d.BasePath, _ = dm["basePath"].(string)
				for _, w := range asList(dm["wheels"]) {
					if s, ok := w.(string); ok {
						d.Wheels = append(d.Wheels, s)
					}
				}
				out.Deps = append(out.Deps, d)
			}
		}
	}
	return out
}

func asList(v any) []any { l, _ := v.([]any); return l }

// pdParser reads the PD notation: {'k': v, …}, ['a','b'], 'quoted', bare words, integers.
type pdParser struct {
	s   string
	pos int
}

func (p *pdParser) skip() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\n' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

func (p *pdParser) value() any {
	p.skip()
	if p.pos >= len(p.s) {
		return nil
	}
	switch p.s[p.pos] {
	case '{':
		p.pos++
		m := map[string]any{}
		for {
			p.skip()
			if p.pos >= len(p.s) {
				return m
			}
			if p.s[p.pos] == '}' {
				p.pos++
				return m
			}
			if p.s[p.pos] == ',' {
				p.pos++
				continue
			}
			k, ok := p.value().(string)
			if !ok {
				return m
			}
			p.skip()
			if p.pos >= len(p.s) || p.s[p.pos] != ':' {
				return m
			}
			p.pos++
			m[k] = p.value()
		}
	case '[':
		p.pos++
		l := []any{}
		for {
			p.skip()
			if p.pos >= len(p.s) {
				return l
			}
			if p.s[p.pos] == ']' {
				p.pos++
				return l
			}
			if p.s[p.pos] == ',' {
				p.pos++
				continue
			}
			start := p.pos
			l = append(l, p.value())
			if p.pos == start {
				return l
			}
		}
	case '\'':
		p.pos++
		start := p.pos
		for i := p.pos; i < len(p.s); i++ {
			if p.s[i] != '\'' {
				continue
			}
			j := i + 1
			for j < len(p.s) && p.s[j] == ' ' {
				j++
			}
			if j >= len(p.s) || p.s[j] == ',' || p.s[j] == ']' || p.s[j] == '}' || p.s[j] == ':' {
				p.pos = i + 1
				return p.s[start:i]
			}
		}
		p.pos = len(p.s)
		return p.s[start:]
	default:
		start := p.pos
		for p.pos < len(p.s) && !strings.ContainsRune(",]}: ", rune(p.s[p.pos])) {
			p.pos++
		}
		word := p.s[start:p.pos]
		if n, err := strconv.ParseInt(word, 10, 64); err == nil {
			return n
		}
		return word
	}
}
