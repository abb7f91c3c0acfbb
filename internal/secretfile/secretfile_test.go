package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRead(t *testing.T) {
	t.Parallel()
	if s, err := Read(write(t, "hunter2\n", 0o600)); err != nil || s != "hunter2" {
		t.Fatalf("Read = %q, %v", s, err)
	}
	for name, tc := range map[string]struct {
		path string
		want string
	}{
		"group readable": {write(t, "x\n", 0o640), "chmod 600"},
		"empty":          {write(t, "\n", 0o600), "empty"},
		"two lines":      {write(t, "a\nb\n", 0o600), "more than one line"},
		"oversized":      {write(t, strings.Repeat("x", MaxSize+1), 0o600), "larger than"},
		"directory":      {t.TempDir(), "not a regular file"},
		"missing":        {filepath.Join(t.TempDir(), "none"), "no such file"},
	} {
		if _, err := Read(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SET": "from-env", "EMPTY": ""}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	file := write(t, "from-file\n", 0o600)
	for _, tc := range []struct {
		env, file string
		required  bool
		want, err string
	}{
		{"SET", "", true, "from-env", ""},
		{"UNSET", file, true, "from-file", ""},
		{"UNSET", "", false, "", ""},
		{"SET", file, false, "", "not both"},
		{"EMPTY", "", true, "", "is empty"},
		{"UNSET", "", true, "", "is required"},
	} {
		got, err := Lookup(getenv, tc.env, tc.file, "the secret", tc.required)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Lookup(%s, %q, %v) = %q, %v; want %q, %q", tc.env, tc.file, tc.required, got, err, tc.want, tc.err)
		}
	}
}
