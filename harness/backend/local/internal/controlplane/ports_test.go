package controlplane

import (
	"net"
	"testing"
)

// Ports come from below the ephemeral range, where no outgoing connection can take them
// between the check and the bind, and are never handed out twice.
func TestFreePortsAvoidTheEphemeralRangeAndRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		ports, err := freePorts(5)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p < 20000 || p >= ephemeralLow() {
				t.Errorf("port %d is outside [20000, %d)", p, ephemeralLow())
			}
			if seen[p] {
				t.Errorf("port %d handed out twice", p)
			}
			seen[p] = true
			l, err := net.Listen("tcp", loopback(p))
			if err != nil {
				t.Errorf("port %d is not free: %v", p, err)
				continue
			}
			_ = l.Close()
		}
	}
}
