package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxSecretFile bounds a secret file.
const MaxSecretFile = 64 << 10

// ReadSecretFile returns the one-line secret in path (a password, an access key secret,
// a password hash), without its final line break. The file must be a regular file that
// neither group nor others may access, non-empty, at most MaxSecretFile bytes, and hold
// one line.
func ReadSecretFile(path string) (string, error) {
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
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > MaxSecretFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, MaxSecretFile)
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

// lookupSecret returns the secret named what from the variable env (looked up with
// getenv; empty counts as unset) or from file (given by flag), never both. With
// required, a missing secret is an error; otherwise a missing one is "".
func lookupSecret(getenv func(string) (string, bool), env, flag, file, what string, required bool) (string, error) {
	v, set := getenv(env)
	empty := set && v == ""
	set = set && v != ""
	switch {
	case set && file != "":
		return "", fmt.Errorf("%s: set either $%s or %s, not both", what, env, flag)
	case set:
		return v, nil
	case file != "":
		s, err := ReadSecretFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %s: %w", what, flag, err)
		}
		return s, nil
	case required && empty:
		return "", fmt.Errorf("%s is required: $%s is empty; set it or %s", what, env, flag)
	case required:
		return "", fmt.Errorf("%s is required: set $%s or %s", what, env, flag)
	}
	return "", nil
}
