package gearstest

import (
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// resultsAndErrors renders an execution's results: [[record...], [error...]].
func resultsAndErrors(e *execution) value {
	return array(array(e.results...), array(e.errors...))
}

func (st *state) reqEntryLocked(rq *requirement) value {
	yn := func(b bool) value {
		if b {
			return bulk("yes")
		}
		return bulk("no")
	}
	refs := int64(0)
	for _, ss := range st.sessions {
		for _, n := range ss.reqs {
			if n == rq.name {
				refs++
			}
		}
	}
	var wheels value
	if rq.downloaded {
		wheels = array(bulks(rq.wheels)...)
	} else {
		wheels = bulk("Requirement was not yet downloaded so wheels are not available")
	}
	return array(bulk("GearReqVersion"), integer(1), bulk("Name"), bulk(rq.name), bulk("IsDownloaded"), yn(rq.downloaded),
		bulk("IsInstalled"), yn(rq.installed), bulk("CompiledOs"), bulk(runtime.GOOS+"-"+runtime.GOARCH),
		bulk("Wheels"), wheels, bulk("Path"), bulk(rq.basePath), bulk("RefCount"), integer(refs),
		bulk("IsInReqDictionary"), bulk("yes"))
}

func (st *state) sessionEntryLocked(ss *session, verbose bool) value {
	needed := int64(0)
	if len(ss.reqs) > 0 {
		needed = 1
	}
	var reqs, regs []value
	for _, n := range ss.reqs {
		if verbose {
			rq := st.reqs[n]
			if rq == nil {
				rq = &requirement{name: n}
			}
			reqs = append(reqs, st.reqEntryLocked(rq))
		} else {
			reqs = append(reqs, bulk(n))
		}
	}
	for _, id := range ss.regIDs {
		if verbose {
			if r := st.regs[id]; r != nil {
				regs = append(regs, st.regEntryLocked(r, false))
			}
		} else {
			regs = append(regs, bulk(id))
		}
	}
	linked, dead := "primary", "false"
	if ss.dead {
		linked, dead = "None", "true"
	}
	return array(bulk("ID"), bulk(ss.id), bulk("sessionDescription"), descValue(ss.desc, ss.hasDesc),
		bulk("refCount"), integer(ss.refCount()), bulk("linked"), bulk(linked), bulk("dead"), bulk(dead),
		bulk("requirementInstallationNeeded"), integer(needed), bulk("requirements"), array(reqs...),
		bulk("registrations"), array(regs...))
}

// descValue is a description as a protocol value: nil when there is none.
func descValue(desc string, has bool) value {
	if !has {
		return nilValue()
	}
	return bulk(desc)
}

// sortedRegsLocked returns the registrations ordered by id number. The caller holds st.mu.
func (st *state) sortedRegsLocked() []*registration {
	out := make([]*registration, 0, len(st.regs))
	for _, r := range st.regs {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := parseID(out[i].id)
		b, _ := parseID(out[j].id)
		return a < b
	})
	return out
}

// statsHead renders the first 16 elements every reader's RegistrationData starts with: the mode and
// the run statistics (command_reader.c, keys_reader.c, streams_reader.c).
func statsHead(r *registration, avg float64) []value {
	return []value{
		bulk("mode"), bulk(r.mode),
		bulk("numTriggered"), integer(r.numTriggered),
		bulk("numSuccess"), integer(r.numSuccess),
		bulk("numFailures"), integer(r.numFailures),
		bulk("numAborted"), integer(r.numAborted),
		bulk("lastRunDurationMS"), integer(r.lastMS),
		bulk("totalRunDurationMS"), integer(r.totalMS),
		bulk("avgRunDurationMS"), double(avg),
	}
}

// regEntryLocked renders one RG.DUMPREGISTRATIONS entry (12 elements, or 10 without PD for
// RG.PYDUMPSESSIONS VERBOSE).
func (st *state) regEntryLocked(r *registration, withPD bool) value {
	done := r.numSuccess + r.numFailures + r.numAborted
	avg := 0.0
	if done > 0 {
		avg = float64(r.totalMS) / float64(done)
	}
	lastErr := nilValue()
	if r.hasLastError {
		lastErr = bulk(r.lastError)
	}
	inorder := int64(0)
	if r.inorder {
		inorder = 1
	}
	var data value
	if r.ev != nil {
		data = r.ev.regData(r, avg, lastErr) // KeysReader/StreamReader (events.go)
	} else {
		data = array(append(statsHead(r, avg), bulk("lastError"), lastErr,
			bulk("args"), array(bulk("trigger"), bulk(r.trigger), bulk("inorder"), integer(inorder)))...)
	}
	out := []value{bulk("id"), bulk(r.id), bulk("reader"), bulk(r.reader), bulk("desc"), descValue(r.desc, r.hasDesc),
		bulk("RegistrationData"), data}
	if withPD {
		out = append(out, bulk("PD"), bulk(st.pdStringLocked(r.sess)))
	}
	out = append(out, bulk("ExecutionThreadPool"), bulk("DefaultPool"))
	return array(out...)
}

// pdStringLocked renders a session the way PythonSessionCtx_ToString does.
func (st *state) pdStringLocked(ss *session) string {
	if ss == nil {
		return ""
	}
	var b strings.Builder
	desc := "null"
	if ss.hasDesc {
		desc = ss.desc
	}
	b.WriteString("{'sessionName':'" + ss.id + "', 'sessionDescription':'" + desc + "', 'refCount': " +
		strconv.FormatInt(ss.refCount(), 10) + ", 'linkedTo': primary, 'dead': false, 'isInstallationNeeded':")
	if len(ss.reqs) > 0 {
		b.WriteString("1")
	} else {
		b.WriteString("0")
	}
	b.WriteString(", 'registrationsList':[")
	for i, id := range ss.regIDs {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("'" + id + "'")
	}
	b.WriteString("], 'depsList':[")
	for i, name := range ss.reqs {
		if i > 0 {
			b.WriteString(",")
		}
		rq := st.reqs[name]
		b.WriteString("{'name':'" + name + "', 'basePath':'")
		if rq != nil {
			b.WriteString(rq.basePath)
		}
		b.WriteString("', 'wheels':[")
		if rq != nil {
			for j, w := range rq.wheels {
				if j > 0 {
					b.WriteString(",")
				}
				b.WriteString("'" + w + "'")
			}
		}
		b.WriteString("]}")
	}
	b.WriteString("]}")
	return b.String()
}
