package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Defaults of ReconcilerConfig.
const (
	DefaultReconcileInterval = 5 * time.Minute
	DefaultMinAge            = 10 * time.Minute
	DefaultMaxScan           = 10_000
	DefaultMaxEvents         = 1_000
	// MaxPageSize is OSS's limit on the keys of one ListObjectsV2 page (and the default).
	MaxPageSize = 1000
)

// ReconcilerConfig configures a Reconciler. Zero values mean the defaults above.
type ReconcilerConfig struct {
	// Bucket and Prefix are the bucket and the global key prefix ("" or ending in "/"),
	// as in Config. Bucket is required.
	Bucket, Prefix string
	// OSS lists and heads the bucket's objects, typically an *oss.Bucket of
	// aliyun-oss-go-sdk (if it is one, its name must equal Bucket). Required.
	OSS ObjectLister
	// OSSTimeout bounds each OSS request; default DefaultOSSTimeout.
	OSSTimeout time.Duration
	// Revoked, when set, reports revoked devices: objects OSS stored after the device's
	// revocation are handed over rejected (ReasonRevoked), not Verified.
	Revoked RevokedFunc
	// Known reports whether the caller's index already has an object (by key), whatever
	// event it came from. Required. An error ends the pass.
	Known func(ctx context.Context, key string) (bool, error)
	// Handler receives the made-up events (Reconciled and Verified set). Required. An
	// error ends the pass; the object is tried again at the next pass.
	Handler Handler
	// Dedup, when set, is consulted and marked like the Consumer's, with the events'
	// deterministic IDs.
	Dedup Deduper

	// Interval is the time between passes in Run.
	Interval time.Duration
	// MinAge: objects modified more recently than this are left alone, since their
	// events may still be on the way (devices publish after the upload completes, and
	// keep unsent events in an outbox across restarts); they are considered again when a
	// later pass comes round to them. Negative means no minimum.
	MinAge time.Duration
	// MaxScan bounds the objects listed in one pass and MaxEvents the events emitted;
	// the next pass continues where this one stopped, and starts over after the last key.
	MaxScan, MaxEvents int
	// PageSize is the number of keys asked for per ListObjectsV2 page, 1 to MaxPageSize.
	PageSize int
	// Now is the clock that MinAge is measured on; nil means time.Now.
	Now func() time.Time
	// Logger receives the reconciler's logs; the zero Logger discards them.
	Logger zerolog.Logger
}

func (c *ReconcilerConfig) applyDefaults() {
	if c.OSSTimeout == 0 {
		c.OSSTimeout = DefaultOSSTimeout
	}
	if c.Interval == 0 {
		c.Interval = DefaultReconcileInterval
	}
	if c.MinAge == 0 {
		c.MinAge = DefaultMinAge
	}
	if c.MaxScan == 0 {
		c.MaxScan = DefaultMaxScan
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if c.PageSize == 0 {
		c.PageSize = MaxPageSize
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *ReconcilerConfig) validate() error {
	errs := checkBucket(c.Bucket, c.Prefix, c.OSS)
	if c.Known == nil {
		errs = append(errs, "Known (the index lookup) is required")
	}
	if c.Handler == nil {
		errs = append(errs, "Handler is required")
	}
	if c.OSSTimeout < 0 || c.Interval < 0 {
		errs = append(errs, fmt.Sprintf("OSSTimeout %v, Interval %v: must not be negative", c.OSSTimeout, c.Interval))
	}
	if c.MaxScan < 1 || c.MaxEvents < 1 {
		errs = append(errs, fmt.Sprintf("MaxScan %d, MaxEvents %d: want at least 1", c.MaxScan, c.MaxEvents))
	}
	if c.PageSize < 1 || c.PageSize > MaxPageSize {
		errs = append(errs, fmt.Sprintf("PageSize %d: want 1 to %d", c.PageSize, MaxPageSize))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(errs, "; "))
	}
	return nil
}

// Reconciler lists the bucket and emits an event for every object under a device's
// prefix that the caller's index does not know: the safety net for events that were
// lost (mochi-mqtt drops QoS 1 messages for subscribers that fall behind) or never sent
// (a device that died between upload and announcement).
//
// A made-up event has Reconciled and Verified set, the device taken from the key,
// status completed, size, CRC-64, content type and ETag from a HEAD of the object,
// UploadedAt its last-modified time, and the ID ReconciledID(bucket, key, etag): the
// same object gives the same ID at every pass and in every process. Its Publisher is
// empty. Objects outside {Prefix}{deviceID}/ with a clean name are skipped and counted.
type Reconciler struct {
	cfg  ReconcilerConfig
	log  zerolog.Logger
	seen *seenSet

	mu     sync.Mutex // one pass at a time
	cursor string     // the last key handled; the next pass starts after it

	passes, scanned, emitted, skipped, errs atomic.Int64
}

// NewReconciler checks cfg and returns a Reconciler.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Reconciler{
		cfg:  cfg,
		log:  cfg.Logger.With().Str("component", "reconciler").Str("bucket", cfg.Bucket).Logger(),
		seen: newSeenSet(DefaultDedupSize, DefaultDedupTTL, time.Now),
	}, nil
}

// ReconciledID returns the event ID of a reconciled event for an object:
// "r-" followed by the first 32 hex digits of SHA-256(bucket NUL key NUL etag), with the
// ETag's quotes removed. A new version of the object (a new ETag) gets a new ID.
func ReconciledID(bucket, key, etag string) string {
	h := sha256.New()
	h.Write([]byte(bucket))
	h.Write([]byte{0})
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(strings.Trim(etag, `"`)))
	var sum [sha256.Size]byte
	return "r-" + hex.EncodeToString(h.Sum(sum[:0]))[:32]
}

// Run runs a pass every Interval until ctx ends, and returns ctx's error. A failed pass
// is logged and the next one continues from where it stopped.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		n, err := r.Pass(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Error().Err(err).Int("emitted", n).Msg("reconcile pass failed")
		case n > 0:
			r.log.Info().Int("emitted", n).Msg("reconcile pass emitted events for unindexed objects")
		}
		t.Reset(r.cfg.Interval)
	}
}

// Pass lists up to MaxScan objects from where the previous pass stopped and hands an
// event for each unknown one to the Handler, up to MaxEvents; it returns how many the
// Handler accepted. On an error (OSS, Known, Dedup or the Handler) the pass stops and
// the next starts at the object that failed. Passes do not overlap: a concurrent call
// waits.
func (r *Reconciler) Pass(ctx context.Context) (n int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.passes.Add(1)
	defer func() {
		if err != nil {
			r.errs.Add(1)
		}
	}()
	scanned, token := 0, ""
	for scanned < r.cfg.MaxScan {
		opts := []oss.Option{oss.Prefix(r.cfg.Prefix), oss.MaxKeys(min(r.cfg.PageSize, r.cfg.MaxScan-scanned))}
		switch {
		case token != "":
			opts = append(opts, oss.ContinuationToken(token))
		case r.cursor != "":
			opts = append(opts, oss.StartAfter(r.cursor))
		}
		page, err := r.list(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("events: listing %s/%s: %w", r.cfg.Bucket, r.cfg.Prefix, err)
		}
		for i := range page.Objects {
			o := &page.Objects[i]
			scanned++
			r.scanned.Add(1)
			emitted, err := r.consider(ctx, o)
			if err != nil {
				return n, err
			}
			if emitted {
				n++
			}
			r.cursor = o.Key
			if n >= r.cfg.MaxEvents {
				return n, nil
			}
		}
		if !page.IsTruncated {
			r.cursor = "" // the end: the next pass starts over
			return n, nil
		}
		if page.NextContinuationToken == "" {
			return n, errors.New("events: OSS listing is truncated without a continuation token")
		}
		token = page.NextContinuationToken
	}
	return n, nil
}

func (r *Reconciler) list(ctx context.Context, opts []oss.Option) (oss.ListObjectsResultV2, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.OSSTimeout)
	defer cancel()
	return r.cfg.OSS.ListObjectsV2(append(opts, oss.WithContext(ctx))...)
}

// consider emits an event for o if it needs one, and reports whether it did.
func (r *Reconciler) consider(ctx context.Context, o *oss.ObjectProperties) (bool, error) {
	device, ok := deviceOfKey(o.Key, r.cfg.Prefix)
	if !ok {
		r.skipped.Add(1)
		r.log.Debug().Str("key", o.Key).Msg("object outside any device prefix skipped")
		return false, nil
	}
	if r.cfg.MinAge > 0 && r.cfg.Now().Sub(o.LastModified) < r.cfg.MinAge {
		return false, nil // its event may still come
	}
	known, err := r.cfg.Known(ctx, o.Key)
	if err != nil {
		return false, fmt.Errorf("events: index lookup of %q: %w", o.Key, err)
	}
	if known {
		return false, nil
	}
	id := ReconciledID(r.cfg.Bucket, o.Key, o.ETag)
	key := dedupKey(device, id)
	if r.seen.has(key) {
		return false, nil
	}
	if d := r.cfg.Dedup; d != nil {
		dup, err := d.Seen(ctx, device, id)
		if err != nil {
			return false, fmt.Errorf("events: Dedup lookup of %s: %w", id, err)
		}
		if dup {
			r.seen.add(key)
			return false, nil
		}
	}
	v := verifier{bucket: r.cfg.Bucket, prefix: r.cfg.Prefix, stat: r.cfg.OSS, timeout: r.cfg.OSSTimeout}
	h, err := v.head(ctx, o.Key)
	if err != nil {
		if isNotFound(err) {
			return false, nil // deleted since the listing
		}
		return false, fmt.Errorf("events: HEAD %q: %w", o.Key, err)
	}
	size, crc, etag := objectFacts(h)
	ev := &Event{
		UploadEvent: clipgate.UploadEvent{
			V: protocol.Version, ID: id, Device: device, Status: clipgate.StatusCompleted,
			Bucket: r.cfg.Bucket, Key: o.Key, Size: size, CRC64: crc,
			ContentType: h.Get("Content-Type"), UploadedAt: o.LastModified.UTC(),
		},
		Verified: true, ETag: etag, Reconciled: true,
	}
	if len(ev.ContentType) > protocol.MaxContentTypeLen {
		ev.ContentType = ""
	}
	if at, bad := writtenWhileRevoked(r.cfg.Revoked, device, o.LastModified); bad {
		ev.Verified, ev.ETag = false, ""
		ev.reject(ReasonRevoked, fmt.Sprintf("object stored at %s, the device was revoked at %s",
			o.LastModified.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339)))
	}
	if err := protocol.ValidateUploadEvent(&ev.UploadEvent); err != nil {
		// OSS gave no usable CRC-64 or size: an object the events cannot describe.
		r.skipped.Add(1)
		r.log.Error().Err(err).Str("key", o.Key).Msg("object skipped: its metadata does not make a valid event")
		return false, nil
	}
	if err := r.cfg.Handler(ctx, ev); err != nil {
		return false, fmt.Errorf("events: handler, reconciled event for %q: %w", o.Key, err)
	}
	r.seen.add(key)
	if d := r.cfg.Dedup; d != nil {
		if err := d.Mark(ctx, device, id); err != nil {
			r.log.Error().Err(err).Str("event", id).Msg("recording the reconciled event failed")
		}
	}
	r.emitted.Add(1)
	r.log.Info().Str("key", o.Key).Str("event", id).Str("device", device).Msg("reconciled event emitted")
	return true, nil
}

// ReconcilerStats are a Reconciler's counters since NewReconciler.
type ReconcilerStats struct {
	// Passes counts passes, Errors those that ended in an error.
	Passes, Errors int64
	// Scanned counts objects listed; Emitted the events the Handler accepted; Skipped the
	// objects outside any device prefix or without usable metadata.
	Scanned, Emitted, Skipped int64
}

// Stats returns the reconciler's counters.
func (r *Reconciler) Stats() ReconcilerStats {
	return ReconcilerStats{
		Passes: r.passes.Load(), Errors: r.errs.Load(),
		Scanned: r.scanned.Load(), Emitted: r.emitted.Load(), Skipped: r.skipped.Load(),
	}
}
