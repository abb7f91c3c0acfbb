package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/clipgate/clipgate/internal/deviceid"
)

// Revocations is the set of revoked device IDs. Revoked is lock-free: the set is
// immutable and replaced as a whole through an atomic pointer. The zero value and a nil
// *Revocations revoke nothing.
type Revocations struct {
	set atomic.Pointer[map[string]struct{}]
}

// NewRevocations returns a list revoking ids.
func NewRevocations(ids ...string) *Revocations {
	r := &Revocations{}
	r.Set(ids)
	return r
}

// LoadRevocations reads a revocation list file: one device ID a line; '#' starts a
// comment (device IDs cannot contain it); blank lines and surrounding spaces are ignored.
// An invalid ID is an error naming its line.
func LoadRevocations(path string) (*Revocations, error) {
	set, err := readRevocations(path)
	if err != nil {
		return nil, err
	}
	r := &Revocations{}
	r.set.Store(&set)
	return r, nil
}

// Revoked reports whether deviceID is revoked.
func (r *Revocations) Revoked(deviceID string) bool {
	if r == nil {
		return false
	}
	p := r.set.Load()
	if p == nil {
		return false
	}
	_, ok := (*p)[deviceID]
	return ok
}

// Len returns the number of revoked IDs.
func (r *Revocations) Len() int {
	if r == nil {
		return 0
	}
	if p := r.set.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// Set replaces the list with ids. IDs are not validated here (an invalid one can never
// match a connected device); LoadRevocations validates what it reads.
func (r *Revocations) Set(ids []string) {
	set := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	r.set.Store(&set)
}

// maxRevocationsFile bounds the file read (about 4 million IDs of 64 characters).
const maxRevocationsFile = 256 << 20

func readRevocations(path string) (map[string]struct{}, error) {
	data, err := readSmallFile(path, maxRevocationsFile)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	return parseRevocations(path, data)
}

func parseRevocations(path string, data []byte) (map[string]struct{}, error) {
	set := make(map[string]struct{})
	for line := 1; len(data) > 0; line++ {
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if i := bytes.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		l = bytes.TrimSpace(l) // also drops the '\r' of CRLF files
		if len(l) == 0 {
			continue
		}
		if err := deviceid.Validate(string(l)); err != nil {
			return nil, fmt.Errorf("revocation list %s:%d: %w", path, line, err)
		}
		set[string(l)] = struct{}{}
	}
	return set, nil
}

// readSmallFile reads a regular file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return readLimited(f, path, limit)
}

func readLimited(f *os.File, path string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is too large (more than %d bytes)", path, limit)
	}
	return data, nil
}

func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// reloadDelay coalesces the bursts of events one edit makes (truncate, write, rename).
const reloadDelay = 50 * time.Millisecond

// Watch keeps the list in step with the file at path until ctx is done; it blocks, so run
// it in a goroutine. It watches path's directory, so editors and tools that write a new
// file and rename it into place (the recommended way to update the list) are seen, as are
// symlink swaps (Kubernetes ConfigMaps). It reloads once when it starts, then after each
// change. A file that cannot be read or holds an invalid ID leaves the current list in
// force and is reported to onErr (which may be nil), as are watcher errors.
// It returns nil when ctx is done, or an error if the watch cannot be set up.
func (r *Revocations) Watch(ctx context.Context, path string, onErr func(error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	defer w.Close()
	clean := filepath.Clean(path)
	dir := filepath.Dir(clean)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("revocation list: watching %s: %w", dir, err)
	}
	report := func(err error) {
		if onErr != nil {
			onErr(err)
		}
	}
	// last identifies the last content (or error) seen, so that events that change
	// nothing (chmod, a rewrite with the same content) neither rebuild the set nor repeat
	// a report.
	var last [sha256.Size]byte
	first := true
	reload := func() {
		data, err := readSmallFile(path, maxRevocationsFile)
		var id [sha256.Size]byte
		if err != nil {
			id = sha256.Sum256([]byte("error\x00" + err.Error()))
		} else {
			id = sha256.Sum256(data)
		}
		if !first && id == last {
			return
		}
		first, last = false, id
		if err != nil {
			report(fmt.Errorf("revocation list: %w; keeping the previous list", err))
			return
		}
		set, err := parseRevocations(path, data)
		if err != nil {
			report(fmt.Errorf("%w; keeping the previous list", err))
			return
		}
		r.set.Store(&set)
	}
	reload()

	timer := time.NewTimer(reloadDelay)
	timer.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("revocation list: watcher closed")
			}
			// Events name the file itself, except when path is a symlink: then a swap of
			// any link in the directory may change its target. The timer is not pushed
			// back by later events, so a busy directory cannot starve reloads.
			if !pending && (filepath.Clean(ev.Name) == clean || isSymlink(path)) {
				pending = true
				timer.Reset(reloadDelay)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("revocation list: watcher closed")
			}
			report(fmt.Errorf("revocation list: watching %s: %w", dir, err))
		case <-timer.C:
			pending = false
			reload()
		}
	}
}
