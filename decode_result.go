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
		f = func(v any) ([]byte, error) {
			r, err := oneRecord("[]byte", v)
			if err != nil {
				return nil, err
			}
			if s, ok := r.(string); ok {
				return []byte(s), nil
			}
			return nil, decodeErr("[]byte", r, "the function did not return bytes or str%s", hint(r))
		}
	case *string:
		f = func(v any) (string, error) {
			r, err := oneRecord("string", v)
			if err != nil {
				return "", err
			}
			if s, ok := r.(string); ok {
				return s, nil
			}
			return "", decodeErr("string", r, "the function did not return str or bytes%s", hint(r))
		}
	case *int64:
		f = func(v any) (int64, error) {
			r, err := oneRecord("int64", v)
			if err != nil {
				return 0, err
			}
			switch x := r.(type) {
			case int64:
				return x, nil
			case string:
				if n, err := strconv.ParseInt(x, 10, 64); err == nil {
					return n, nil
				}
			case float64:
				if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
					return int64(x), nil
				}
			}
			return 0, decodeErr("int64", r, "the function did not return an int%s", hint(r))
		}
	case *float64:
		f = func(v any) (float64, error) {
			r, err := oneRecord("float64", v)
			if err != nil {
				return 0, err
			}
			switch x := r.(type) {
			case float64:
				return x, nil
			case int64:
				return float64(x), nil
			case string:
				// RedisGears sends a Python float as "%f" text, e.g. "1.500000".
				if n, err := strconv.ParseFloat(x, 64); err == nil {
					return n, nil
				}
			}
			return 0, decodeErr("float64", r, "the function did not return a number%s", hint(r))
		}
	case *bool:
		f = func(v any) (bool, error) {
			r, err := oneRecord("bool", v)
			if err != nil {
				return false, err
			}
			switch x := r.(type) {
			case bool:
				return x, nil
			case int64:
				// Python's True and False are sent as the integers 1 and 0.
				if x == 0 || x == 1 {
					return x == 1, nil
				}
			}
			return false, decodeErr("bool", r, "the function did not return a bool%s", hint(r))
		}
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
	if len(recs) != 1 {
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
