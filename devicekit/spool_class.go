package devicekit

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// SpoolClass is a priority class of a Spool's clips (SpoolConfig.Classes): which clips
// belong to it, and when they may be uploaded.
type SpoolClass struct {
	// Name names the class in logs, in the events' metadata ("class") and in the
	// reasons of dropped clips. Required, unique; letters, digits, '.', '_' and '-'.
	Name string
	// Dir is a subdirectory of the spool directory (one name, such as "event") whose
	// clips belong to the class; it is created if missing and watched like the spool
	// directory itself.
	Dir string
	// Patterns match the names of clips in the spool directory itself (path.Match
	// syntax, such as "evt-*.mp4"); the first class with a matching pattern takes the
	// clip.
	Patterns []string
	// Windows are the daily spans of local time (SpoolConfig.Now) in which the class's
	// clips may start uploading; none means any time. An upload running when its window
	// closes is finished.
	Windows []Window
}

// ParseSpoolClass reads a class as the device CLI's --class flag writes it:
//
//	NAME=MATCH[,MATCH...][@WINDOW[,WINDOW...]]
//
// where a MATCH ending in '/' is the class's subdirectory and any other a file name
// pattern, and a WINDOW is HH:MM-HH:MM. "event=event/,evt-*" and
// "continuous=continuous/@22:00-06:00" are classes; "other=" takes the clips no other
// class takes.
func ParseSpoolClass(s string) (SpoolClass, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok {
		return SpoolClass{}, fmt.Errorf("class %q: want NAME=MATCH[,MATCH...][@HH:MM-HH:MM,...], e.g. continuous=continuous/@22:00-06:00", s)
	}
	c := SpoolClass{Name: strings.TrimSpace(name)}
	matches, windows, timed := strings.Cut(rest, "@")
	for m := range strings.SplitSeq(matches, ",") {
		switch m = strings.TrimSpace(m); {
		case m == "":
		case strings.HasSuffix(m, "/"):
			if c.Dir != "" {
				return SpoolClass{}, fmt.Errorf("class %q: two subdirectories (%s, %s)", c.Name, c.Dir, m)
			}
			c.Dir = strings.TrimSuffix(m, "/")
			if c.Dir == "" {
				return SpoolClass{}, fmt.Errorf("class %q: subdirectory %q has no name", c.Name, m)
			}
		default:
			c.Patterns = append(c.Patterns, m)
		}
	}
	if timed {
		for w := range strings.SplitSeq(windows, ",") {
			win, err := ParseWindow(w)
			if err != nil {
				return SpoolClass{}, fmt.Errorf("class %q: %w", c.Name, err)
			}
			c.Windows = append(c.Windows, win)
		}
	}
	if err := c.check(); err != nil {
		return SpoolClass{}, err
	}
	return c, nil
}

// UnmarshalText reads a class with ParseSpoolClass (flags, configuration files).
func (c *SpoolClass) UnmarshalText(b []byte) error {
	v, err := ParseSpoolClass(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// catchAll reports whether the class takes the clips no other class takes.
func (c *SpoolClass) catchAll() bool { return c.Dir == "" && len(c.Patterns) == 0 }

// check validates one class on its own.
func (c *SpoolClass) check() error {
	if c.Name == "" || len(c.Name) > 64 || strings.Trim(c.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		return fmt.Errorf("class name %q: want 1 to 64 letters, digits, '.', '_' or '-'", c.Name)
	}
	if c.Dir != "" && (c.Dir == "." || c.Dir == ".." || strings.ContainsAny(c.Dir, `/\`+"\x00") || tempName(c.Dir)) {
		return fmt.Errorf("class %q: subdirectory %q must be one plain name within the spool directory", c.Name, c.Dir)
	}
	for _, p := range c.Patterns {
		if _, err := path.Match(p, ""); err != nil || strings.ContainsAny(p, "/\x00") {
			return fmt.Errorf("class %q: pattern %q is not a file name pattern (path.Match syntax)", c.Name, p)
		}
	}
	for _, w := range c.Windows {
		if err := w.check(); err != nil {
			return fmt.Errorf("class %q: window %s: %w", c.Name, w, err)
		}
	}
	return nil
}

// checkClasses validates SpoolConfig.Classes together and creates their subdirectories
// (and, with AfterMove, the same under DoneDir).
func (c *SpoolConfig) checkClasses() error {
	names, dirs := map[string]bool{}, map[string]bool{}
	catchAll := false
	for i := range c.Classes {
		cl := &c.Classes[i]
		if err := cl.check(); err != nil {
			return configErr("spool Classes[%d]: %v", i, err)
		}
		if names[cl.Name] {
			return configErr("spool Classes[%d]: class %q named twice", i, cl.Name)
		}
		names[cl.Name] = true
		if cl.catchAll() {
			if catchAll {
				return configErr("spool Classes[%d] %q: two classes without subdirectory or patterns (only one may take the rest)", i, cl.Name)
			}
			catchAll = true
		}
		if cl.Dir == "" {
			continue
		}
		if dirs[cl.Dir] {
			return configErr("spool Classes[%d] %q: subdirectory %q belongs to two classes", i, cl.Name, cl.Dir)
		}
		dirs[cl.Dir] = true
		dir := filepath.Join(c.Dir, cl.Dir)
		if dir == c.DoneDir {
			return configErr("spool Classes[%d] %q: subdirectory %q is DoneDir", i, cl.Name, cl.Dir)
		}
		if err := mkdirClass(dir); err != nil {
			return configErr("spool Classes[%d] %q: %v", i, cl.Name, err)
		}
		if c.After == AfterMove {
			if err := mkdirClass(filepath.Join(c.DoneDir, cl.Dir)); err != nil {
				return configErr("spool Classes[%d] %q: DoneDir: %v", i, cl.Name, err)
			}
		}
	}
	return nil
}

// mkdirClass creates a class subdirectory; an existing entry must be a directory.
func mkdirClass(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// classOf returns the rank of the class of the clip name (a path relative to Dir: a
// class subdirectory's clips are "dir/file"): the index of its class in Classes, or
// len(Classes) for a clip no class takes (uploaded after all classes, dropped first).
func (s *Spool) classOf(name string) int {
	cls := s.cfg.Classes
	if dir, file, sub := strings.Cut(name, string(filepath.Separator)); sub {
		for i := range cls {
			if cls[i].Dir == dir {
				return i
			}
		}
		name = file // cannot happen: only class subdirectories are read
	}
	rest := len(cls)
	for i := range cls {
		for _, p := range cls[i].Patterns {
			if ok, _ := path.Match(p, name); ok {
				return i
			}
		}
		if cls[i].catchAll() {
			rest = i
		}
	}
	return rest
}

// className is the name of the class of rank i ("" for clips no class takes).
func (s *Spool) className(i int) string {
	if i < len(s.cfg.Classes) {
		return s.cfg.Classes[i].Name
	}
	return ""
}

// open reports whether clips of class rank i may start uploading at t.
func (s *Spool) open(i int, t time.Time) bool {
	return i >= len(s.cfg.Classes) || inWindows(s.cfg.Classes[i].Windows, t)
}

// classDirs are the class subdirectories' names relative to Dir.
func (s *Spool) classDirs() []string {
	var dirs []string
	for _, c := range s.cfg.Classes {
		if c.Dir != "" {
			dirs = append(dirs, c.Dir)
		}
	}
	return dirs
}

// byPriority orders clips for upload: class rank, then oldest first (FIFO in a class).
func byPriority(a, b *spoolClip) int {
	return cmp.Or(cmp.Compare(a.class, b.class), byAge(a, b))
}

// byEviction orders clips for MaxBytes: the lowest class first, oldest first within it.
func byEviction(a, b *spoolClip) int {
	return cmp.Or(cmp.Compare(b.class, a.class), byAge(a, b))
}

// metadata is the event metadata of a spooled clip: its file name (relative to Dir) and
// its class, if it has one.
func (s *Spool) metadata(c *spoolClip) map[string]string {
	m := fileMetadata(c.name)
	if name := s.className(c.class); name != "" {
		m["class"] = name
	}
	return m
}
