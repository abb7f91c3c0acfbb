package devicekit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// AfterUpload says what a Spool does with a clip once it is uploaded and its event is
// durable.
type AfterUpload string

// What becomes of an uploaded clip.
const (
	AfterRemove AfterUpload = "remove" // delete it (the default)
	AfterMove   AfterUpload = "move"   // move it into SpoolConfig.DoneDir
)

// Defaults and limits of SpoolConfig.
const (
	DefaultSettle       = 5 * time.Second
	DefaultPollInterval = 2 * time.Second
	DefaultRetryMin     = time.Second
	DefaultRetryMax     = time.Minute
	DefaultDoneDir      = "done" // under Dir

	MinPollInterval = 10 * time.Millisecond
)

// SpoolConfig configures a Spool. Zero values take the documented defaults.
type SpoolConfig struct {
	// Dir is the spool directory the recorder writes clips into. It must exist. Required.
	Dir string
	// Settle is how long a file must keep its size and modification time to count as
	// finished, unless it was renamed into place. Default 5s.
	Settle time.Duration
	// After is what becomes of an uploaded clip: AfterRemove (default) or AfterMove.
	After AfterUpload
	// DoneDir receives uploaded clips with AfterMove; default Dir/done. It is created if
	// missing and must be on Dir's filesystem (clips are renamed into it).
	DoneDir string
	// MaxBytes bounds the total size of the clips waiting in Dir: above it, clips are
	// dropped, those of the lowest class first (see Classes), oldest first within a
	// class. 0 means no bound. It should be well above the largest clip.
	MaxBytes int64
	// MaxAge bounds the age of waiting clips, measured from their modification time:
	// older ones are dropped. 0 means no bound.
	MaxAge time.Duration
	// PollInterval is the period of the directory scan, which always runs besides fsnotify
	// (it catches missed events and serves filesystems without inotify). Default 2s,
	// at least 10ms.
	PollInterval time.Duration
	// NoNotify turns fsnotify off: the spool relies on the scan alone, and every clip
	// waits for Settle.
	NoNotify bool
	// RetryMin and RetryMax bound the backoff between failed uploads (exponential, with
	// jitter, never above RetryMax). Defaults 1s and 1m.
	RetryMin, RetryMax time.Duration
	// Classes are the clips' priority classes, highest first (see SpoolClass): clips are
	// uploaded in class order, oldest first within a class, each class within its
	// windows; clips no class takes come after all classes. None: one class, any time.
	Classes []SpoolClass
	// Now is the clock of Settle, MaxAge and the classes' windows (whose local time is
	// that of Now's location); nil means time.Now.
	Now func() time.Time
	// OnEvent, when set, is told of every outcome. It is called from the spool's
	// goroutine, one call at a time: it should return quickly.
	OnEvent func(SpoolEvent)
}

// SpoolEventKind is the kind of a SpoolEvent.
type SpoolEventKind int

// Outcomes reported to SpoolConfig.OnEvent.
const (
	// SpoolUploaded: the clip is stored, its event durable, the file removed or moved.
	SpoolUploaded SpoolEventKind = iota + 1
	// SpoolDropped: MaxBytes or MaxAge deleted the clip; Event is the "failed" event.
	SpoolDropped
	// SpoolRejected: the file cannot be uploaded as it is (empty, unreadable); it is
	// kept and tried again once it changes. Event is the "failed" event.
	SpoolRejected
	// SpoolRetry: an upload attempt failed (Err); the next one is in Retry.
	SpoolRetry
	// SpoolSkipped: the entry is not a regular file (directory, symlink, ...) and is
	// left alone. Reported once per entry.
	SpoolSkipped
)

// String returns "uploaded", "dropped", "rejected", "retry" or "skipped".
func (k SpoolEventKind) String() string {
	switch k {
	case SpoolUploaded:
		return "uploaded"
	case SpoolDropped:
		return "dropped"
	case SpoolRejected:
		return "rejected"
	case SpoolRetry:
		return "retry"
	case SpoolSkipped:
		return "skipped"
	}
	return fmt.Sprintf("SpoolEventKind(%d)", int(k))
}

// SpoolEvent is one outcome of a Spool.
type SpoolEvent struct {
	Kind  SpoolEventKind
	Path  string                // the file in Dir
	Size  int64                 // its size
	Event *clipgate.UploadEvent // the upload event (Uploaded, Dropped, Rejected)
	Err   error                 // why (Rejected, Retry, Skipped)
	Retry time.Duration         // the wait before the next attempt (Retry)
}

// Spool uploads the clips a recorder writes into a directory. Create it with NewSpool
// (or use Kit.Watch) and call Run.
//
// A file counts as finished when fsnotify sees it renamed into place within Dir (the
// recorder writes a temporary name, then renames it), or when its size and modification
// time have not changed for Settle (files created in place, moved in from another
// directory, or seen by the scan alone). Names starting with '.' or ending in .tmp or
// .part are temporary and ignored; so are entries that are not regular files (reported
// once as SpoolSkipped; symlinks are not followed).
//
// Finished clips are uploaded one at a time, oldest modification time first (then by
// name), in class order when there are Classes (see SpoolClass: a recorder puts event
// clips in one subdirectory or under one name pattern, continuous footage in another,
// and a class may upload only within daily windows; a running upload is not interrupted
// for a higher class, which goes next), with Kit.Upload under a clip name made of the file name (SanitizeClipName:
// Unicode stays, only what is unsafe in a key becomes '_'); the metadata key "file"
// carries the original name. A clip whose name another recording of the same day holds
// goes under its alternate name (see Kit.Upload): nothing is overwritten. Once Upload
// returns (the object is stored, and its event acknowledged by the broker or synced in
// the kit's outbox), the file is removed, or moved into DoneDir. A file that changed
// after it was uploaded is left in place and uploaded again. A failed upload is retried, after a backoff with
// jitter, for as long as the clip stays within MaxBytes and MaxAge; the attempts are not
// announced one by one.
//
// Bounds: the clips waiting in Dir (not DoneDir, not temporary files) are kept within
// MaxBytes and MaxAge by deleting the oldest (for MaxBytes, those of the lowest class
// first), each announced with a "failed" event whose error says why ("dropped: ..."). Events go through the kit's outbox, so those of a
// camera that is offline are published once it reconnects.
//
// Empty files are never uploaded (the rule of Kit.Upload, ErrEmptyClip): a "failed"
// event ("rejected: empty file ...") announces each one, which stays in Dir until it
// changes or the bounds drop it.
//
// A clip that leaves Dir before it is uploaded (dropped by the bounds, deleted, renamed)
// has its interrupted multipart upload aborted in the background (see the kit's sweep).
//
// Restarts: an interrupted upload is resumed by the next Spool on the same kit state
// (Upload's journal keeps its multipart checkpoint, and its event ID is derived from the
// clip). An uploaded clip that was not yet removed is recorded in StateDir/spool and is
// removed by the next Spool without a second upload. (A crash in the instant between
// Upload's return and that record being written makes the next Spool upload the clip
// again: Upload finds it stored and announces it again, under the same event ID.) The
// events of dropped and rejected clips have IDs derived from the device, directory,
// name, size and modification time, so announcing one again after a crash repeats the
// same ID.
type Spool struct {
	kit      *Kit
	cfg      SpoolConfig
	log      zerolog.Logger
	stateDir string // StateDir/spool: records of uploaded clips not yet removed
	running  atomic.Bool

	// Owned by Run's goroutine.
	clips    map[string]*spoolClip
	skipped  map[string]uint64 // entries reported as not regular files -> scan generation
	gen      uint64            // scan generation
	renames  []time.Time       // recent fsnotify Rename events in Dir, to pair with Creates
	inflight *attempt
	results  chan uploadResult
	retry    *time.Timer
	retryAt  time.Time // no upload starts before (wall clock)
	failures int       // consecutive failed attempts
	lastErr  error     // of the last failed attempt, cleared by a success
	queued   bool      // events were put in the outbox

	pub publisher
	ctr spoolCounters // Stats

	// Test hooks (nil in production), called from Run's goroutine.
	onRunning   func()                        // the watch is set and the first scan done
	onObserve   func(name string, size int64) // a clip seen for the first time or changed
	onStart     func(name string)             // an upload attempt starts
	afterUpload func(name string)             // Upload succeeded, the record is written
	onDropping  func(name string)             // the bounds interrupt the running upload to drop its clip
	onIdle      func()                        // dispatch found no clip it may start
}

// spoolClip is a regular file in Dir that is not a temporary name.
type spoolClip struct {
	name     string
	size     int64
	mtime    time.Time
	changed  time.Time // spool clock: when size or mtime last changed (or first seen)
	ready    bool      // settled, or renamed into place
	rejected bool      // not uploadable as it is; reset when it changes
	drop     string    // reason, when the bounds drop it while its upload runs
	class    int       // rank of its class (classOf)
	attempts int
	gen      uint64
}

// stat is what a clip looked like when its upload started.
type stat struct {
	size  int64
	mtime time.Time
}

type attempt struct {
	clip   *spoolClip
	sent   stat
	cancel context.CancelFunc
}

type uploadResult struct {
	a   *attempt
	ev  *clipgate.UploadEvent
	err error
}

// renameWindow is how long a Rename event in Dir may wait for the Create it pairs with.
const renameWindow = 2 * time.Second

// NewSpool validates cfg and returns a Spool that uploads through k. k need not be
// connected yet: uploads are retried until it is. Errors wrap ErrConfig.
func NewSpool(k *Kit, cfg SpoolConfig) (*Spool, error) {
	if k == nil {
		return nil, configErr("NewSpool: nil Kit")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Spool{
		kit:      k,
		cfg:      cfg,
		log:      k.log.With().Str("component", "spool").Str("dir", cfg.Dir).Logger(),
		stateDir: filepath.Join(k.cfg.StateDir, spoolDir),
		clips:    make(map[string]*spoolClip),
		skipped:  make(map[string]uint64),
		results:  make(chan uploadResult, 1),
		pub:      publisher{kick: make(chan struct{}, 1)},
	}
	if err := os.MkdirAll(s.stateDir, 0o700); err != nil {
		return nil, configErr("StateDir: %v", err)
	}
	return s, nil
}

// Watch uploads the clips written into cfg.Dir until ctx ends: NewSpool and Run.
func (k *Kit) Watch(ctx context.Context, cfg SpoolConfig) error {
	s, err := NewSpool(k, cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Validate reports what NewSpool would refuse in c, without a Kit, so that a command can
// tell a usage error before it opens the state directory. (It creates DoneDir, as NewSpool
// does, to check that clips can be moved there.) Errors wrap ErrConfig.
func (c SpoolConfig) Validate() error {
	_, err := c.withDefaults()
	return err
}

func (c SpoolConfig) withDefaults() (SpoolConfig, error) {
	if c.Dir == "" {
		return c, configErr("spool Dir is required")
	}
	var err error
	if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return c, configErr("spool Dir: %v", err)
	}
	if fi, err := os.Stat(c.Dir); err != nil {
		return c, configErr("spool directory: %v", err)
	} else if !fi.IsDir() {
		return c, configErr("spool directory %s is not a directory", c.Dir)
	}
	switch {
	case c.Settle < 0:
		return c, configErr("spool Settle %v is negative", c.Settle)
	case c.Settle == 0:
		c.Settle = DefaultSettle
	}
	switch {
	case c.PollInterval == 0:
		c.PollInterval = DefaultPollInterval
	case c.PollInterval < MinPollInterval:
		return c, configErr("spool PollInterval %v is below %v", c.PollInterval, MinPollInterval)
	}
	if c.MaxBytes < 0 {
		return c, configErr("spool MaxBytes %d is negative", c.MaxBytes)
	}
	if c.MaxAge < 0 {
		return c, configErr("spool MaxAge %v is negative", c.MaxAge)
	}
	if c.RetryMin == 0 {
		c.RetryMin = DefaultRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = max(DefaultRetryMax, c.RetryMin)
	}
	if c.RetryMin < time.Millisecond || c.RetryMax < c.RetryMin {
		return c, configErr("spool retry bounds %v..%v: want 1ms <= RetryMin <= RetryMax", c.RetryMin, c.RetryMax)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch c.After {
	case "":
		c.After = AfterRemove
	case AfterRemove:
	case AfterMove:
		if c.DoneDir == "" {
			c.DoneDir = filepath.Join(c.Dir, DefaultDoneDir)
		}
		if c.DoneDir, err = filepath.Abs(c.DoneDir); err != nil {
			return c, configErr("spool DoneDir: %v", err)
		}
		if c.DoneDir == c.Dir {
			return c, configErr("spool DoneDir is the spool directory itself")
		}
		if err := os.MkdirAll(c.DoneDir, 0o755); err != nil {
			return c, configErr("spool DoneDir: %v", err)
		}
		if err := probeRename(c.Dir, c.DoneDir); err != nil {
			return c, configErr("spool DoneDir %s: clips cannot be moved there from %s: %v", c.DoneDir, c.Dir, err)
		}
	default:
		return c, configErr("spool After %q is not %q or %q", c.After, AfterRemove, AfterMove)
	}
	c.Classes = slices.Clone(c.Classes)
	if err := c.checkClasses(); err != nil {
		return c, err
	}
	return c, nil
}

// probeRename checks that a file of dir can be renamed into done (same filesystem,
// writable), with a temporary name the spool ignores.
func probeRename(dir, done string) error {
	f, err := os.CreateTemp(dir, ".probe-*.tmp")
	if err != nil {
		return err
	}
	f.Close()
	target := filepath.Join(done, filepath.Base(f.Name()))
	if err := os.Rename(f.Name(), target); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Remove(target)
}

// SpoolIgnores reports whether a Spool ignores files of this name: names of files being
// written (starting with '.', ending in .tmp or .part).
func SpoolIgnores(name string) bool { return tempName(name) }

// tempName reports whether name is a file being written that the spool must ignore.
func tempName(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".part")
}

// errSpoolRunning is returned by a second call of Run.
var errSpoolRunning = errors.New("devicekit: Spool.Run called twice")

// Run watches the spool directory and uploads its clips until ctx ends, then returns nil
// (an upload in progress is interrupted and resumed by the next Run). It returns an
// error when it cannot go on: the directory is gone or unreadable, an uploaded clip
// cannot be removed or moved, a dropped clip cannot be deleted, or the kit was closed.
// Run may be called once.
func (s *Spool) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errSpoolRunning
	}
	// Recorded in the state lock, so that another process of the camera can hand files
	// to this spool (StateHolder.Spools).
	unrecord, err := s.kit.lock.addSpool(s.cfg.Dir)
	if err != nil {
		s.log.Warn().Err(err).Msg("cannot record the spool in the state lock")
	}
	defer unrecord()
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.publishLoop(ctx)
	}()
	events, errs, closeWatcher := s.watch()
	defer func() {
		closeWatcher()
		s.stopAttempt()
		stop()
		wg.Wait()
		if s.queued {
			s.kit.flushOutbox() // whatever the spool had no time to publish
		}
	}()

	s.pruneRecords()
	if err := s.scan(); err != nil {
		return err
	}
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	s.retry = time.NewTimer(time.Hour)
	s.retry.Stop()
	defer s.retry.Stop()
	s.log.Info().Bool("fsnotify", events != nil).Msg("spool started")
	if s.onRunning != nil {
		s.onRunning()
	}

	for {
		if err := s.step(ctx); err != nil {
			return err
		}
		var err error
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				s.log.Warn().Msg("fsnotify stopped; scanning only")
				continue
			}
			s.onNotify(ev)
		case werr, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// An overflow loses events: the scan catches up with what they said.
			s.log.Warn().Err(werr).Msg("fsnotify error; rescanning")
			err = s.scan()
		case <-tick.C:
			err = s.scan()
		case r := <-s.results:
			err = s.onResult(ctx, r)
		case <-s.retry.C:
		}
		if err != nil {
			return err
		}
	}
}

// watch starts fsnotify on Dir, unless NoNotify; nil channels when it is off or fails.
func (s *Spool) watch() (<-chan fsnotify.Event, <-chan error, func()) {
	if s.cfg.NoNotify {
		return nil, nil, func() {}
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(s.cfg.Dir)
		for _, d := range s.classDirs() {
			if err == nil {
				err = w.Add(s.path(d))
			}
		}
		if err != nil {
			w.Close()
		}
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("fsnotify unavailable; scanning the directory only")
		return nil, nil, func() {}
	}
	return w.Events, w.Errors, func() { w.Close() }
}

// step applies the bounds, settles clips and starts the next upload.
func (s *Spool) step(ctx context.Context) error {
	if err := s.enforce(); err != nil {
		return err
	}
	now := s.cfg.Now()
	for _, c := range s.clips {
		if !c.ready && now.Sub(c.changed) >= s.cfg.Settle {
			c.ready = true
		}
	}
	return s.dispatch(ctx)
}

func (s *Spool) path(name string) string { return filepath.Join(s.cfg.Dir, name) }

// scan lists Dir and brings the clips up to date; an unreadable Dir is fatal.
func (s *Spool) scan() error {
	s.gen++
	for _, sub := range append([]string{""}, s.classDirs()...) {
		entries, err := os.ReadDir(s.path(sub))
		if err != nil {
			return fmt.Errorf("devicekit: spool directory: %w", err)
		}
		for _, e := range entries {
			if name := e.Name(); !tempName(name) {
				if fi, err := e.Info(); err == nil { // else removed meanwhile
					s.observe(filepath.Join(sub, name), fi)
				}
			}
		}
	}
	for name, c := range s.clips {
		if c.gen != s.gen {
			s.forget(name)
		}
	}
	for name, gen := range s.skipped {
		if gen != s.gen {
			delete(s.skipped, name)
		}
	}
	return nil
}

// observe records what an entry of Dir looks like now and returns its clip (nil if it is
// not a regular file).
func (s *Spool) observe(name string, fi fs.FileInfo) *spoolClip {
	if !fi.Mode().IsRegular() {
		s.forget(name)
		if _, seen := s.skipped[name]; !seen && !(fi.IsDir() && (s.path(name) == s.cfg.DoneDir || slices.Contains(s.classDirs(), name))) {
			err := fmt.Errorf("not a regular file (%s)", typeName(fi.Mode()))
			s.log.Warn().Str("file", name).Err(err).Msg("spool entry skipped")
			s.emit(SpoolEvent{Kind: SpoolSkipped, Path: s.path(name), Err: err})
		}
		s.skipped[name] = s.gen
		return nil
	}
	delete(s.skipped, name)
	c := s.clips[name]
	if c == nil {
		c = &spoolClip{name: name, size: fi.Size(), mtime: fi.ModTime(), changed: s.cfg.Now(), class: s.classOf(name)}
		s.clips[name] = c
		s.observed(c)
	} else if c.size != fi.Size() || !c.mtime.Equal(fi.ModTime()) {
		c.size, c.mtime, c.changed = fi.Size(), fi.ModTime(), s.cfg.Now()
		c.ready, c.rejected = false, false
		s.observed(c)
	}
	c.gen = s.gen
	return c
}

func (s *Spool) observed(c *spoolClip) {
	if s.onObserve != nil {
		s.onObserve(c.name, c.size)
	}
}

func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return m.Type().String()
}

// forget drops a clip that left Dir; the one being uploaded stays until its result.
func (s *Spool) forget(name string) {
	if s.inflight != nil && s.inflight.clip.name == name {
		return
	}
	if c := s.clips[name]; c != nil && c.attempts > 0 {
		s.kit.sweepSoon(true) // it left before its upload succeeded: abort what that left in OSS
	}
	delete(s.clips, name)
}

// onNotify handles an fsnotify event on Dir.
func (s *Spool) onNotify(ev fsnotify.Event) {
	dir := filepath.Dir(ev.Name)
	if dir != s.cfg.Dir && !(filepath.Dir(dir) == s.cfg.Dir && slices.Contains(s.classDirs(), filepath.Base(dir))) {
		return
	}
	name, _ := filepath.Rel(s.cfg.Dir, ev.Name)
	if ev.Has(fsnotify.Rename) {
		s.renames = append(s.renames, time.Now())
	}
	renamed := ev.Has(fsnotify.Create) && s.takeRename()
	if tempName(filepath.Base(name)) {
		return
	}
	fi, err := os.Lstat(ev.Name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.forget(name)
			delete(s.skipped, name)
		}
		return
	}
	c := s.observe(name, fi)
	// A Create paired with a Rename is a file renamed into place within Dir: complete.
	// (A file moved in from elsewhere, or created here, settles.)
	if c != nil && renamed && c.size > 0 {
		c.ready = true
	}
	if err := s.enforce(); err != nil {
		s.log.Error().Err(err).Msg("applying the spool bounds") // the next step reports it
	}
}

// takeRename consumes the oldest recent Rename event, if any.
func (s *Spool) takeRename() bool {
	cut := time.Now().Add(-renameWindow)
	i := 0
	for i < len(s.renames) && s.renames[i].Before(cut) {
		i++
	}
	s.renames = s.renames[i:]
	if len(s.renames) == 0 {
		return false
	}
	s.renames = s.renames[1:]
	return true
}

// byAge orders clips by modification time, then name.
func byAge(a, b *spoolClip) int {
	if c := a.mtime.Compare(b.mtime); c != 0 {
		return c
	}
	return cmp.Compare(a.name, b.name)
}

// dispatch starts the upload of the finished clip of the highest class whose window is
// open, the oldest of that class, unless one is running or the spool is backing off.
func (s *Spool) dispatch(ctx context.Context) error {
	if s.inflight != nil || time.Now().Before(s.retryAt) || ctx.Err() != nil {
		return nil
	}
	now := s.cfg.Now()
	for {
		var next *spoolClip
		for _, c := range s.clips {
			if c.ready && !c.rejected && s.open(c.class, now) && (next == nil || byPriority(c, next) < 0) {
				next = c
			}
		}
		if next == nil {
			if s.onIdle != nil {
				s.onIdle()
			}
			return nil
		}
		// The file may have changed since it was seen (a write right after a rename).
		fi, err := os.Lstat(s.path(next.name))
		if err != nil {
			delete(s.clips, next.name)
			continue
		}
		if s.observe(next.name, fi) != next || !next.ready {
			continue
		}
		if rec := s.loadRecord(next); rec != nil { // uploaded before a restart
			if err := s.finish(next, stat{next.size, next.mtime}, rec.Event); err != nil {
				return err
			}
			continue
		}
		if err := emptyClip(next.size); err != nil {
			s.reject(next, err)
			continue
		}
		s.start(ctx, next)
		return nil
	}
}

// quietKey marks the context of a spool upload: Upload does not announce its failures,
// since the spool tries again (and announces a clip it gives up on).
type quietKey struct{}

func quietFailures(ctx context.Context) bool { return ctx.Value(quietKey{}) != nil }

func (s *Spool) start(ctx context.Context, c *spoolClip) {
	actx, cancel := context.WithCancel(context.WithValue(ctx, quietKey{}, true))
	a := &attempt{clip: c, sent: stat{c.size, c.mtime}, cancel: cancel}
	s.inflight = a
	c.attempts++
	clip := Clip{Path: s.path(c.name), Name: SanitizeClipName(filepath.Base(c.name)), Metadata: s.metadata(c)}
	s.log.Debug().Str("file", c.name).Int64("size", c.size).Int("attempt", c.attempts).Msg("uploading")
	if s.onStart != nil {
		s.onStart(c.name)
	}
	go func() {
		ev, err := s.kit.Upload(actx, clip)
		s.results <- uploadResult{a: a, ev: ev, err: err}
	}()
}

// stopAttempt interrupts the running upload and waits for it.
func (s *Spool) stopAttempt() {
	if s.inflight == nil {
		return
	}
	s.inflight.cancel()
	<-s.results
	s.inflight = nil
}

// onResult handles the end of an upload attempt.
func (s *Spool) onResult(ctx context.Context, r uploadResult) error {
	a, c := r.a, r.a.clip
	a.cancel()
	s.inflight = nil
	if r.err == nil {
		s.failures, s.lastErr = 0, nil
		if err := s.saveRecord(c, a.sent, r.ev); err != nil {
			s.log.Warn().Err(err).Str("file", c.name).Msg("recording the upload (a restart before removal uploads it again)")
		}
		if s.afterUpload != nil {
			s.afterUpload(c.name)
		}
		if ctx.Err() != nil {
			return nil // stopping: the record lets the next Run finish it
		}
		return s.finish(c, a.sent, r.ev)
	}
	switch {
	case c.drop != "":
		return s.drop(c, c.drop)
	case errors.Is(r.err, ErrClosed):
		return r.err
	case ctx.Err() != nil:
		return nil
	}
	fi, err := os.Lstat(s.path(c.name))
	if err != nil {
		s.log.Info().Str("file", c.name).Err(r.err).Msg("clip vanished during its upload")
		delete(s.clips, c.name)
		s.kit.sweepSoon(true) // abort what its upload left in OSS
		return nil
	}
	if s.observe(c.name, fi) != c || !c.ready {
		return nil // it changed: it settles and goes again
	}
	if errors.Is(r.err, ErrEmptyClip) { // emptied since it was seen
		s.reject(c, r.err)
		return nil
	}
	// The spool's clip names are always valid: an invalid clip is a file that cannot be
	// opened. Any other refusal (another Upload of the same file running) is retried.
	if errors.Is(r.err, ErrInvalidClip) && !readable(s.path(c.name)) {
		s.reject(c, r.err)
		return nil
	}
	s.failures++
	s.lastErr = r.err
	wait := s.backoff(r.err)
	s.retryAt = time.Now().Add(wait)
	s.retry.Reset(wait)
	s.log.Warn().Err(r.err).Str("file", c.name).Int("attempt", c.attempts).Dur("retry", wait).Msg("upload failed; retrying")
	s.emit(SpoolEvent{Kind: SpoolRetry, Path: s.path(c.name), Size: c.size, Err: r.err, Retry: wait})
	return nil
}

// readable reports whether path opens for reading.
func readable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// backoff is the wait after the latest failure: an exponentially growing window, between
// half of it and all of it, at least the token worker's retryAfter, at most RetryMax.
func (s *Spool) backoff(err error) time.Duration {
	window := s.cfg.RetryMax
	if n := s.failures - 1; n < 32 && s.cfg.RetryMin<<n < window && s.cfg.RetryMin<<n > 0 {
		window = s.cfg.RetryMin << n
	}
	d := window/2 + mrand.N(window/2+1)
	var ae *clipgate.AuthError
	if errors.As(err, &ae) && ae.RetryAfter > d {
		d = ae.RetryAfter
	}
	return min(d, s.cfg.RetryMax)
}

// finish removes or moves an uploaded clip, if it is still what was uploaded.
func (s *Spool) finish(c *spoolClip, sent stat, ev *clipgate.UploadEvent) error {
	path := s.path(c.name)
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Removed by someone else: nothing left to do.
	case err != nil:
		return fmt.Errorf("devicekit: spool: uploaded clip %s: %w", path, err)
	case fi.Size() != sent.size || !fi.ModTime().Equal(sent.mtime) || (ev != nil && ev.Size != sent.size):
		s.log.Warn().Str("file", c.name).Msg("clip changed after its upload; it goes again")
		s.removeRecord(c.name, sent)
		s.observe(c.name, fi)
		return nil
	case s.cfg.After == AfterMove:
		if err := os.Rename(path, filepath.Join(s.cfg.DoneDir, c.name)); err != nil {
			return fmt.Errorf("devicekit: spool: moving uploaded clip %s: %w", path, err)
		}
	default:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("devicekit: spool: removing uploaded clip %s: %w", path, err)
		}
	}
	s.removeRecord(c.name, sent)
	delete(s.clips, c.name)
	id := ""
	if ev != nil {
		id = ev.ID
	}
	s.log.Info().Str("file", c.name).Str("event", id).Msg("clip uploaded")
	s.emit(SpoolEvent{Kind: SpoolUploaded, Path: path, Size: sent.size, Event: ev})
	return nil
}

// enforce drops the clips beyond MaxAge, then, beyond MaxBytes, those of the lowest
// class first, oldest first within a class.
func (s *Spool) enforce() error {
	if s.cfg.MaxAge == 0 && s.cfg.MaxBytes == 0 {
		return nil
	}
	now := s.cfg.Now()
	var total int64
	list := make([]*spoolClip, 0, len(s.clips))
	for _, c := range s.clips {
		if c.drop == "" {
			total += c.size
			list = append(list, c)
		}
	}
	// MaxAge drops by age; then MaxBytes in eviction order.
	old := func(c *spoolClip) bool { return s.cfg.MaxAge > 0 && now.Sub(c.mtime) > s.cfg.MaxAge }
	slices.SortFunc(list, func(a, b *spoolClip) int {
		switch oa, ob := old(a), old(b); {
		case oa && ob:
			return byAge(a, b)
		case oa:
			return -1
		case ob:
			return 1
		}
		return byEviction(a, b)
	})
	for _, c := range list {
		var reason string
		switch {
		case old(c):
			reason = fmt.Sprintf("dropped: older than %s (recorded %s)", formatDuration(s.cfg.MaxAge), c.mtime.UTC().Format(time.RFC3339))
		case s.cfg.MaxBytes > 0 && total > s.cfg.MaxBytes:
			reason = fmt.Sprintf("dropped: spool over %s (%s waiting)", formatBytes(s.cfg.MaxBytes), formatBytes(total))
			if name := s.className(c.class); name != "" {
				reason += fmt.Sprintf("; class %q, the lowest waiting", name)
			}
		default:
			continue
		}
		if s.lastErr != nil {
			reason += " while uploads fail (last error: " + s.lastErr.Error() + ")"
		}
		total -= c.size
		if s.inflight != nil && s.inflight.clip == c {
			c.drop = reason // dropped when the interrupted attempt returns
			s.inflight.cancel()
			if s.onDropping != nil {
				s.onDropping(c.name)
			}
			continue
		}
		if err := s.drop(c, reason); err != nil {
			return err
		}
	}
	return nil
}

// formatBytes writes n in binary units: "2 GiB", "1.5 MiB", "900 B".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + string("KMGTPE"[i]) + "iB"
}

// formatDuration writes d without trailing zero units: "24h", "1h30m", "90ms".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// emit reports an outcome to OnEvent.
func (s *Spool) emit(e SpoolEvent) {
	s.ctr.count(e)
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(e)
	}
}
