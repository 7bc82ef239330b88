package gears

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
)

// A trigger replies with the array of its result records. A Command's function returns one value, so
// its reply is normally a one-record array and T is decoded from that record; several records (an async
// registration runs on every shard of a cluster) are only accepted by []any and any.

// pyRecord is what RedisGears sends for a value it cannot encode (None, dict, tuple, bytearray).
const pyRecord = "PY RECORD"

// decoderFor returns the reply decoder for T: the WithDecoder function if one was given, else the
// built-in conversion for []byte, string, int64, float64, bool, []any and any.
func decoderFor[T any](custom any) (func(any) (T, error), error) {
	var zero T
	if custom != nil {
		fn, ok := custom.(func(any) (T, error))
		if !ok {
			return nil, fmt.Errorf("gears: WithDecoder was given a %s, but the Command decodes into %s",
				reflect.TypeOf(custom), typeName[T]())
		}
		return func(v any) (T, error) {
			r, err := replyValue(v)
			if err != nil {
				return zero, err
			}
			return fn(r)
		}, nil
	}
	var f any
	switch any(&zero).(type) {
	case *[]byte:
		f = single("[]byte", "bytes or str", func(r any) ([]byte, bool) {
			s, ok := r.(string)
			return []byte(s), ok
		})
	case *string:
		f = single("string", "str or bytes", func(r any) (string, bool) {
			s, ok := r.(string)
			return s, ok
		})
	case *int64:
		f = single("int64", "an int", func(r any) (int64, bool) {
			switch x := r.(type) {
			case int64:
				return x, true
			case string:
				n, err := strconv.ParseInt(x, 10, 64)
				return n, err == nil
			case float64:
				return int64(x), x == math.Trunc(x) && math.Abs(x) < 1<<63
			}
			return 0, false
		})
	case *float64:
		f = single("float64", "a number", func(r any) (float64, bool) {
			switch x := r.(type) {
			case float64:
				return x, true
			case int64:
				return float64(x), true
			case string:
				// RedisGears sends a Python float as "%f" text, e.g. "1.500000".
				n, err := strconv.ParseFloat(x, 64)
				return n, err == nil
			}
			return 0, false
		})
	case *bool:
		f = single("bool", "a bool", func(r any) (bool, bool) {
			switch x := r.(type) {
			case bool:
				return x, true
			case int64:
				// Python's True and False are sent as the integers 1 and 0.
				return x == 1, x == 0 || x == 1
			}
			return false, false
		})
	case *[]any:
		f = func(v any) ([]any, error) {
			recs, err := records(v)
			if err != nil {
				return nil, err
			}
			if len(recs) == 1 {
				if l, ok := recs[0].([]any); ok {
					return l, nil
				}
				return nil, decodeErr("[]any", recs[0], "the function did not return a list%s", hint(recs[0]))
			}
			return recs, nil
		}
	case *any:
		f = func(v any) (any, error) { return replyValue(v) }
	default:
		return nil, fmt.Errorf("gears: Command[%s] needs WithDecoder: built-in decoding covers []byte, string, "+
			"int64, float64, bool, []any and any", typeName[T]())
	}
	return f.(func(any) (T, error)), nil
}

// single is the decoder of a reply that must hold one record, converted by conv; target names T and
// want what the function should have returned, for the error.
func single[T any](target, want string, conv func(r any) (T, bool)) func(any) (T, error) {
	return func(v any) (T, error) {
		var zero T
		r, err := oneRecord(target, v)
		if err != nil {
			return zero, err
		}
		if x, ok := conv(r); ok {
			return x, nil
		}
		return zero, decodeErr(target, r, "the function did not return %s%s", want, hint(r))
	}
}

func typeName[T any]() string {
	return reflect.TypeOf((*T)(nil)).Elem().String()
}

// records reads the reply's record array; an error element at record level is the function's error
// (a str starting with '-' is sent as one). The registration Command renders maps each call to exactly
// one record (one per shard for Async on a cluster), so a reply without records means that RedisGears
// aborted the execution and replied with the results so far (CommandReader_OnDone): ErrAborted.
func records(v any) ([]any, error) {
	recs, err := asArray("records", v)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, ErrAborted
	}
	for _, r := range recs {
		if e := asError(r); e != nil {
			return nil, e
		}
	}
	return recs, nil
}

// oneRecord reads a reply that must hold exactly one record.
func oneRecord(target string, v any) (any, error) {
	recs, err := records(v)
	if err != nil {
		return nil, err
	}
	switch {
	case len(recs) > 1:
		// The usual cause: an Async function on a Redis Cluster runs on every shard, one record each.
		return nil, decodeErr(target, v, "expected one result record, got %d (a function in mode async "+
			"on a Redis Cluster runs on every shard and replies one record per shard: register it with "+
			"WithMode(AsyncLocal) or WithMode(Sync) to run it once, or take every record as []any)", len(recs))
	case len(recs) != 1:
		return nil, decodeErr(target, v, "expected one result record, got %d", len(recs))
	}
	return recs[0], nil
}

// replyValue is what Command[any] returns: the single record, or all records when there are several.
func replyValue(v any) (any, error) {
	recs, err := records(v)
	if err != nil {
		return nil, err
	}
	if len(recs) == 1 {
		return recs[0], nil
	}
	return recs, nil
}

// hint explains replies that usually mean the function returned something RedisGears cannot encode.
func hint(r any) string {
	if s, ok := r.(string); ok && s == pyRecord {
		return ` (RedisGears sends "PY RECORD" for None, dict, tuple and bytearray: return bytes(...), str or a list)`
	}
	return ""
}
