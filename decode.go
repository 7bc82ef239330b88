package gears

import (
	"fmt"
	"math/big"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// This file holds the reply readers shared by every typed decoder. go-redis hands replies over as Go
// values: bulk and status strings as string, integers as int64, arrays as []any, nil as nil, an error
// element inside an array as a redis.Error value; RESP3 adds float64 (doubles), bool, *big.Int and
// map[any]any. RedisGears writes some fields with RedisModule_ReplyWithDouble, which is a bulk string
// under RESP2 ("0") and a double under RESP3 (,0), so number readers accept both.

// normalize converts error elements of a reply into *Error (recursively) so callers see one error type.
func normalize(v any) any {
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			switch e.(type) {
			case []any, redis.Error:
				x[i] = normalize(e)
			}
		}
		return v // not x: boxing the slice again would allocate on every reply
	case redis.Error:
		return parseError(x.Error())
	case error:
		return x
	default:
		return v
	}
}

// asArray reads an array reply.
func asArray(target string, v any) ([]any, error) {
	a, ok := v.([]any)
	if !ok {
		if err := asError(v); err != nil {
			return nil, err
		}
		return nil, decodeErr(target, v, "expected an array")
	}
	return a, nil
}

// asError returns v as an error when it is an error element.
func asError(v any) error {
	switch x := v.(type) {
	case *Error:
		return x
	case redis.Error:
		return parseError(x.Error())
	}
	return nil
}

// asString reads a bulk or status string; nil reads as "".
func asString(target string, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case nil:
		return "", nil
	}
	if err := asError(v); err != nil {
		return "", err
	}
	return "", decodeErr(target, v, "expected a string")
}

// asInt reads an integer (RESP integer, or a bulk string holding one).
func asInt(target string, v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, decodeErr(target, v, "expected an integer")
		}
		return n, nil
	case *big.Int:
		if x.IsInt64() {
			return x.Int64(), nil
		}
	case nil:
		return 0, nil
	}
	if err := asError(v); err != nil {
		return 0, err
	}
	return 0, decodeErr(target, v, "expected an integer")
}

// asFloat reads a double: RESP3 double, RESP2 bulk string ("0", "1.500000", "inf"), or integer.
func asFloat(target string, v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case int64:
		return float64(x), nil
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, decodeErr(target, v, "expected a number")
		}
		return f, nil
	case nil:
		return 0, nil
	}
	if err := asError(v); err != nil {
		return 0, err
	}
	return 0, decodeErr(target, v, "expected a number")
}

// asBool reads RedisGears' boolean spellings: integers 0/1, "yes"/"no", "true"/"false", RESP3 bool.
func asBool(target string, v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case int64:
		return x != 0, nil
	case string:
		switch x {
		case "yes", "true", "True", "1":
			return true, nil
		case "no", "false", "False", "0", "":
			return false, nil
		}
	case nil:
		return false, nil
	}
	if err := asError(v); err != nil {
		return false, err
	}
	return false, decodeErr(target, v, "expected a boolean")
}

// asStrings reads an array of strings; nil reads as nil.
func asStrings(target string, v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	a, err := asArray(target, v)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(a))
	for i, e := range a {
		if out[i], err = asString(target, e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fields walks a flat [name, value, name, value, …] array. RedisGears replies are such lists (they stay
// arrays under RESP3), but a RESP3 map is accepted too in case a server sends one.
func fields(target string, v any, fn func(name string, val any) error) error {
	if m, ok := v.(map[any]any); ok {
		for k, val := range m {
			name, err := asString(target, k)
			if err != nil {
				return err
			}
			if err := fn(name, val); err != nil {
				return err
			}
		}
		return nil
	}
	a, err := asArray(target, v)
	if err != nil {
		return err
	}
	if len(a)%2 != 0 {
		return decodeErr(target, v, "expected name/value pairs, got %d elements", len(a))
	}
	for i := 0; i < len(a); i += 2 {
		name, err := asString(target, a[i])
		if err != nil {
			return err
		}
		if err := fn(name, a[i+1]); err != nil {
			return fmt.Errorf("%s field %q: %w", target, name, err)
		}
	}
	return nil
}
