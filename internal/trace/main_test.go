package trace

import (
	"os"
	"testing"

	"github.com/synscope/synscope/internal/lab"
)

func TestMain(m *testing.M) {
	// The lab re-executes this test binary as its agents.
	lab.MaybeRunAgent()
	os.Exit(m.Run())
}
