package cli

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Version returns the version line of a command: its name, the module version and the
// VCS revision it was built from (with "+modified" for uncommitted changes) and the Go
// version, as debug.ReadBuildInfo tells them.
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (no build information)"
	}
	return formatVersion(name, bi)
}

func formatVersion(name string, bi *debug.BuildInfo) string {
	version := bi.Main.Version
	if version == "" {
		version = "(unknown)"
	}
	var rev, when string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", name, version)
	if rev != "" {
		b.WriteString(" revision " + rev)
		if modified {
			b.WriteString("+modified")
		}
		if when != "" {
			b.WriteString(" (" + when + ")")
		}
	}
	if bi.GoVersion != "" {
		b.WriteString(" " + bi.GoVersion)
	}
	return b.String()
}
