package watch

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/synscope/synscope/internal/safetext"
)

// TestJSONEscaperKeepsValues: hidden characters, a supplementary one
// included (a surrogate pair), leave the line as escapes that decode to
// the same value.
func TestJSONEscaperKeepsValues(t *testing.T) {
	in := "dev\u202e\u2028\U000e0041\u00ad✓\x7f"
	line, err := json.Marshal(map[string]string{"dev": in})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := (jsonEscaper{w: &out}).Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
	if !safetext.Safe(string(bytes.TrimSuffix(out.Bytes(), []byte("\n")))) {
		t.Fatalf("escaped line %q is not terminal-safe", out.String())
	}
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["dev"] != in {
		t.Fatalf("escaped line %q decodes to %q (%v), want %q", out.String(), back["dev"], err, in)
	}
}
