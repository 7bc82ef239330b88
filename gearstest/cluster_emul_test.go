package gearstest

import "testing"

func TestClusterSlotMath(t *testing.T) {
	for key, want := range map[string]int{"foo": 12182, "bar": 5061, "{user1000}.following": 3443, "{}x": keySlot([]byte("{}x")), "a{b}c": keySlot([]byte("b"))} {
		if got := keySlot([]byte(key)); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
	if got := keySlot([]byte("{}x")); got != int(crc16([]byte("{}x"))&16383) {
		t.Errorf("an empty tag hashes the whole key: %d", got)
	}
	for n, want := range map[int][][2]int{
		1: {{0, 16383}},
		3: {{0, 5460}, {5461, 10922}, {10923, 16383}},
		5: {{0, 3276}, {3277, 6553}, {6554, 9829}, {9830, 13106}, {13107, 16383}},
	} {
		got := splitSlots(n)
		if len(got) != len(want) {
			t.Fatalf("splitSlots(%d) = %v", n, got)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("splitSlots(%d) = %v, want %v", n, got, want)
				break
			}
		}
	}
	for slot := 0; slot < clusterSlots; slot += 97 {
		if tag := slotTag(slot); keySlot([]byte(tag)) != slot || len(tag) > 3 {
			t.Errorf("slotTag(%d) = %q, whose slot is %d", slot, tag, keySlot([]byte(tag)))
		}
	}
}
