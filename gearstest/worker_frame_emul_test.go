package gearstest

import (
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestEncodeMsgCompactFrame: a message of bulk strings only goes as a compact frame (PROTOCOL.md
// "Framing"), binary-safe (spaces, CR/LF, empty elements, a leading '!'); any other element keeps
// the whole message RESP2.
func TestEncodeMsgCompactFrame(t *testing.T) {
	require.Equal(t, "!7 1 2 0 1 3 0 5\ntrigger7r1lt a\r\n!x\n",
		string(encodeMsg([]value{bulk("trigger"), bulk("7"), bulk("r1"), bulk(""), bulk("l"),
			bulk("t a"), bulk(""), bulk("\r\n!x\n")})))
	require.Equal(t, "!4\nping", string(encodeMsg([]value{bulk("ping")})))
	require.Equal(t, "*3\r\n$4\r\nexec\r\n$-1\r\n:3\r\n",
		string(encodeMsg([]value{bulk("exec"), nilValue(), integer(3)})))
	require.Equal(t, "*2\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n",
		string(encodeMsg([]value{bulk("a"), array(bulk("b"))})))
}

// TestReplyMsgCompactForBulk: a reply whose value is a bulk string goes as a compact frame with
// the value's bytes as they are; other values (nil, integer, array, status, a malformed bulk)
// keep the RESP2 array with the value spliced in.
func TestReplyMsgCompactForBulk(t *testing.T) {
	cases := map[string]string{
		"$3\r\nabc\r\n":          "!5 2 1 3\nreply12vabc",
		"$0\r\n\r\n":             "!5 2 1 0\nreply12v",
		"$4\r\na\r\nb\r\n":       "!5 2 1 4\nreply12va\r\nb",
		"$-1\r\n":                "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n$-1\r\n",
		":5\r\n":                 "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n:5\r\n",
		"+OK\r\n":                "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n+OK\r\n",
		"*1\r\n$1\r\na\r\n":      "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n*1\r\n$1\r\na\r\n",
		"$3\r\nab\r\n":           "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n$3\r\nab\r\n",
		"$1\r\nab\r\n":           "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n$1\r\nab\r\n",
		"*1\r\n+\r\n":            "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n*1\r\n+\r\n",
		"$2\r\nabX\n":            "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n$2\r\nabX\n",
		"$\r\n\r\n":              "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n$\r\n\r\n",
		"$99999999999999999\r\n": "*4\r\n$5\r\nreply\r\n$2\r\n12\r\n$1\r\nv\r\n$99999999999999999\r\n",
	}
	for raw, want := range cases {
		require.Equal(t, want, string(replyMsg([]byte("12"), 'v', []byte(raw))), "%q", raw)
	}
	require.Equal(t, "!5 2 1 4\nreply12eERR\n", string(replyMsg([]byte("12"), 'e', encBulk("ERR\n"))))
}

// TestCompactFramesEndToEnd: trigger arguments and execute() replies that a compact frame carries
// reach the function byte for byte (spaces, CR/LF, empty, a leading '!' or '*', non-UTF-8 bytes).
func TestCompactFramesEndToEnd(t *testing.T) {
	srv := Run(t)
	ctx := ctxT(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = rdb.Close() })
	require.Equal(t, "OK", rdb.Do(ctx, "RG.PYEXECUTE",
		"GB('CommandReader').flatmap(lambda x: x[1:] + [execute('GET', a) for a in x[1:]])"+
			".register(trigger='frames', mode='async_local')").Val())
	args := []string{"a b", "", "x\r\ny\n", "!3 1\n", "*1\r\n$1\r\na\r\n", "\xff\xfe"}
	for _, a := range args {
		require.NoError(t, rdb.Set(ctx, a, "v:"+a, 0).Err())
	}
	cmd := []interface{}{"RG.TRIGGER", "frames"}
	for _, a := range args {
		cmd = append(cmd, a)
	}
	got, err := rdb.Do(ctx, cmd...).Result()
	require.NoError(t, err)
	// (A flatmap's records come back last first, as on the real server.)
	require.Equal(t, []interface{}{`bytearray(b'v:\xff\xfe')`, "v:*1\r\n$1\r\na\r\n", "v:!3 1\n",
		"v:x\r\ny\n", "v:", "v:a b", `bytearray(b'\xff\xfe')`, "*1\r\n$1\r\na\r\n", "!3 1\n",
		"x\r\ny\n", "", "a b"}, got)
}

// TestTriggerFrameIsEncodeMsgOfTheTrigger: the trigger frame encoded directly (the RG.TRIGGER hot
// path) is byte for byte encodeMsg of the same message, binary and empty arguments included.
func TestTriggerFrameIsEncodeMsgOfTheTrigger(t *testing.T) {
	r := &registration{id: "0000000000000000000000000000000000000000-1"}
	e := &execution{id: "0000000000000000000000000000000000000000-12"}
	for _, args := range [][][]byte{
		{[]byte("t")},
		{[]byte("t"), []byte("k")},
		{[]byte("t"), {}, []byte("a\r\nb\x00"), []byte(strings.Repeat("x", 1000))},
	} {
		for _, rid := range []int64{1, 9, 10, 123456789012} {
			want := []value{bulk("trigger"), bulk(strconv.FormatInt(rid, 10)), bulk(r.id), bulk(e.id), bulk("x" + e.id), bulk("l")}
			for _, a := range args[1:] {
				want = append(want, bulkBytes(a))
			}
			require.Equal(t, string(encodeMsg(want)), string(triggerFrame(rid, r.id, e.id, "x"+e.id, "l", args)))
		}
	}
}
