// Package secretfile reads the secrets of clipgate's commands (service-account passwords,
// access key secrets, password hashes) from the environment or from files that only their
// owner may read. Secrets are never taken from flags.
package secretfile

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxSize bounds a secret file.
const MaxSize = 64 << 10

// Read returns the one-line secret in path, without its final line break. The file must
// be a regular file that neither group nor others may access, non-empty, at most MaxSize
// bytes, and hold one line.
func Read(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is accessible by group or others (mode %04o); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > MaxSize {
		return "", fmt.Errorf("%s is larger than %d bytes", path, MaxSize)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s holds more than one line", path)
	}
	return s, nil
}

// Lookup returns the secret named what from the environment variable env (looked up with
// getenv) or from file, never both. With required, a missing or empty secret is an error;
// otherwise a missing one is "".
func Lookup(getenv func(string) (string, bool), env, file, what string, required bool) (string, error) {
	v, inEnv := getenv(env)
	switch {
	case inEnv && file != "":
		return "", fmt.Errorf("%s: set either %s or the file flag, not both", what, env)
	case inEnv:
		if v == "" && required {
			return "", fmt.Errorf("%s: %s is empty", what, env)
		}
		return v, nil
	case file != "":
		s, err := Read(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		return s, nil
	case required:
		return "", fmt.Errorf("%s is required: set %s or the file flag", what, env)
	}
	return "", nil
}
