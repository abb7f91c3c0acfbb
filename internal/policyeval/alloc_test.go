//go:build !race

package policyeval

import "testing"

// TestEvaluateDoesNotAllocate guards the hot path (the race detector adds allocations of
// its own, hence the build tag).
func TestEvaluateDoesNotAllocate(t *testing.T) {
	role, session := benchDocs(t)
	for name, r := range benchRequests() {
		var d Decision
		allocs := testing.AllocsPerRun(200, func() {
			d = role.Evaluate(r)
			d = session.Evaluate(r)
			Authorize(r, role, session)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per evaluation (last decision %v), want 0", name, allocs, d)
		}
	}
}
