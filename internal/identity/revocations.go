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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/clipgate/clipgate/internal/deviceid"
)

// Revocation is one revoked device and when it was revoked. At is zero when unknown
// (an ID added to a list file by hand).
type Revocation struct {
	Device string
	At     time.Time
}

// Revocations is the set of revoked device IDs, with their revocation times. Revoked is
// lock-free: the set is immutable and replaced as a whole through an atomic pointer. The
// zero value and a nil *Revocations revoke nothing.
//
// A list reaches it in one of two ways, both ending in the same apply: from a file
// (LoadRevocations, Watch: the simple setup, where the console and the other components
// share a filesystem), or as a list signed by the console (ApplySigned, called by the
// broker and the token workers for each list they receive: the console publishes it
// retained on an MQTT topic that only it may write).
type Revocations struct {
	set atomic.Pointer[revState]
	mu  sync.Mutex // serializes applies (ApplySigned's check of Issued and the swap)
	// onRevoke are the OnRevoke callbacks by registration number; guarded by mu.
	onRevoke map[int]func([]string)
	nextHook int
}

// revState is one applied list.
type revState struct {
	at     map[string]time.Time
	issued time.Time // of a signed list; zero for a file or Set
}

// NewRevocations returns a list revoking ids.
func NewRevocations(ids ...string) *Revocations {
	r := &Revocations{}
	r.Set(ids)
	return r
}

// LoadRevocations reads a revocation list file: one device ID a line, optionally
// followed by its revocation time (RFC 3339); '#' starts a comment (device IDs cannot
// contain it); blank lines and surrounding spaces are ignored. An invalid line is an
// error naming it.
func LoadRevocations(path string) (*Revocations, error) {
	list, err := readRevocations(path)
	if err != nil {
		return nil, err
	}
	r := &Revocations{}
	r.apply(list, time.Time{})
	return r, nil
}

// Revoked reports whether deviceID is revoked.
func (r *Revocations) Revoked(deviceID string) bool {
	_, ok := r.RevokedAt(deviceID)
	return ok
}

// RevokedAt reports whether deviceID is revoked and since when (zero if unknown).
func (r *Revocations) RevokedAt(deviceID string) (time.Time, bool) {
	if r == nil {
		return time.Time{}, false
	}
	p := r.set.Load()
	if p == nil {
		return time.Time{}, false
	}
	at, ok := p.at[deviceID]
	return at, ok
}

// Len returns the number of revoked IDs.
func (r *Revocations) Len() int {
	if r == nil {
		return 0
	}
	if p := r.set.Load(); p != nil {
		return len(p.at)
	}
	return 0
}

// List returns the revoked devices sorted by ID.
func (r *Revocations) List() []Revocation {
	if r == nil {
		return nil
	}
	p := r.set.Load()
	if p == nil {
		return nil
	}
	out := make([]Revocation, 0, len(p.at))
	for id, at := range p.at {
		out = append(out, Revocation{Device: id, At: at})
	}
	slices.SortFunc(out, func(a, b Revocation) int { return strings.Compare(a.Device, b.Device) })
	return out
}

// Issued returns the issue time of the signed list in force (zero if none).
func (r *Revocations) Issued() time.Time {
	if r == nil {
		return time.Time{}
	}
	if p := r.set.Load(); p != nil {
		return p.issued
	}
	return time.Time{}
}

// Set replaces the list with ids (revocation times unknown). IDs are not validated here
// (an invalid one can never match a connected device); LoadRevocations validates what
// it reads.
func (r *Revocations) Set(ids []string) {
	list := make([]Revocation, len(ids))
	for i, id := range ids {
		list[i] = Revocation{Device: id}
	}
	r.SetList(list)
}

// SetList replaces the list with list.
func (r *Revocations) SetList(list []Revocation) { r.apply(list, time.Time{}) }

// apply is the one way a list comes into force, whatever its source.
func (r *Revocations) apply(list []Revocation, issued time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.store(list, issued)
}

// store replaces the state and tells the OnRevoke callbacks which devices it newly
// revokes; r.mu is held. A device listed twice keeps its earliest known revocation time.
func (r *Revocations) store(list []Revocation, issued time.Time) {
	set := make(map[string]time.Time, len(list))
	for _, e := range list {
		if old, ok := set[e.Device]; !ok || !e.At.IsZero() && (old.IsZero() || e.At.Before(old)) {
			set[e.Device] = e.At
		}
	}
	prev := r.set.Load()
	r.set.Store(&revState{at: set, issued: issued})
	if len(r.onRevoke) == 0 {
		return
	}
	var added []string
	for id := range set {
		if prev == nil || !hasKey(prev.at, id) {
			added = append(added, id)
		}
	}
	if len(added) == 0 {
		return
	}
	for _, f := range r.onRevoke {
		f(added)
	}
}

func hasKey(m map[string]time.Time, k string) bool {
	_, ok := m[k]
	return ok
}

// OnRevoke registers f, called after every apply that revokes devices not revoked before
// (whatever the list's source) with those device IDs. It runs while the apply holds the
// list's lock, so it must be quick and must not call back into r. The returned function
// unregisters f. A token worker uses it to drop the credentials it cached for a device
// before its revocation, so that a restore does not hand them out again.
func (r *Revocations) OnRevoke(f func(devices []string)) (unregister func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.onRevoke == nil {
		r.onRevoke = make(map[int]func([]string))
	}
	n := r.nextHook
	r.nextHook++
	r.onRevoke[n] = f
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.onRevoke, n)
	}
}

// maxRevocationsFile bounds the file read (about 4 million IDs of 64 characters).
const maxRevocationsFile = 256 << 20

func readRevocations(path string) ([]Revocation, error) {
	data, err := readSmallFile(path, maxRevocationsFile)
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	return ParseRevocations(path, data)
}

// ParseRevocations parses a revocation list in the file format of LoadRevocations; name
// is the file's name, for errors. The result is in file order, duplicates included.
func ParseRevocations(name string, data []byte) ([]Revocation, error) {
	var out []Revocation
	for _, fl := range fieldLines(data) {
		line, fields := fl.n, fl.fields
		if err := deviceid.Validate(fields[0]); err != nil {
			return nil, fmt.Errorf("revocation list %s:%d: %w", name, line, err)
		}
		e := Revocation{Device: fields[0]}
		if len(fields) > 2 {
			return nil, fmt.Errorf("revocation list %s:%d: want a device ID and optionally its revocation time", name, line)
		}
		if len(fields) == 2 {
			at, err := time.Parse(time.RFC3339Nano, fields[1])
			if err != nil {
				return nil, fmt.Errorf("revocation list %s:%d: revocation time %q: want RFC 3339", name, line, truncateText(fields[1]))
			}
			e.At = at.UTC()
		}
		out = append(out, e)
	}
	return out, nil
}

// FormatRevocations writes list in the file format: one "ID TIME" (or "ID") line each.
func FormatRevocations(b *bytes.Buffer, list []Revocation) {
	for _, e := range list {
		b.WriteString(e.Device)
		if !e.At.IsZero() {
			b.WriteByte(' ')
			b.WriteString(e.At.UTC().Format(time.RFC3339Nano))
		}
		b.WriteByte('\n')
	}
}

func truncateText(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
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
		list, err := ParseRevocations(path, data)
		if err != nil {
			report(fmt.Errorf("%w; keeping the previous list", err))
			return
		}
		r.apply(list, time.Time{})
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
