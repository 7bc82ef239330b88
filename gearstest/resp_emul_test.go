package gearstest

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadRawKeepsTheArrayType is the regression test of a hang of TestExternalRedis: readRaw looked at
// an array header's type again after reading the elements, when the reader's buffer had been refilled
// and the byte there could be '|' (an attribute, which is followed by one more reply): it then waited
// for a reply that never came (seen with the COMMAND reply of a redis-server, whose order is random).
func TestReadRawKeepsTheArrayType(t *testing.T) {
	for size := 1; size <= 40; size++ {
		for elems := 1; elems <= 4; elems++ {
			var msg bytes.Buffer
			fmt.Fprintf(&msg, "*%d\r\n", elems)
			for i := 0; i < elems; i++ {
				fmt.Fprintf(&msg, "$%d\r\n%s\r\n", size, strings.Repeat("|", size))
			}
			want := msg.Bytes()
			// The smallest buffer bufio allows, so that the elements refill it many times.
			r := bufio.NewReaderSize(bytes.NewReader(append(append([]byte(nil), want...), "+next\r\n"...)), 16)
			got, err := readRaw(r, nil)
			require.NoError(t, err, "size %d, %d elements", size, elems)
			require.Equal(t, string(want), string(got), "size %d, %d elements", size, elems)
			rest, err := readRaw(r, nil)
			require.NoError(t, err)
			require.Equal(t, "+next\r\n", string(rest), "the next reply is intact")
		}
	}
}
