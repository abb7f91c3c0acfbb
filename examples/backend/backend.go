// Package backend is an example backend service built on events: an index of the clips
// cameras uploaded, fed by a consumer that hands it verified, deduplicated events.
package backend

import (
	"context"
	"sync"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/events"
)

// Clip is an indexed clip.
type Clip struct {
	Device, Key string
	Size        int64
	CRC64       string
}

// Index holds the clips of verified upload events and counts the rest. It is safe for
// concurrent use: the consumer runs several handlers at once.
type Index struct {
	mu       sync.Mutex
	clips    map[string]Clip // by key
	failed   int             // failed-upload events
	rejected map[events.Reason]int
	changed  chan struct{} // closed and replaced at every change
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{clips: map[string]Clip{}, rejected: map[events.Reason]int{}, changed: make(chan struct{})}
}

// Handle is the consumer's events.Handler: it indexes verified events, counts failed
// uploads and rejected events, and returns nil so that each event is acknowledged.
// Indexing by key makes a redelivered event harmless.
func (ix *Index) Handle(_ context.Context, ev *events.Event) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	switch {
	case ev.Rejected():
		ix.rejected[ev.Reason]++
	case ev.Status == clipgate.StatusFailed:
		ix.failed++
	case ev.Verified:
		ix.clips[ev.Key] = Clip{Device: ev.Device, Key: ev.Key, Size: ev.Size, CRC64: ev.CRC64}
	}
	close(ix.changed)
	ix.changed = make(chan struct{})
	return nil
}

// Clip returns the indexed clip at key.
func (ix *Index) Clip(key string) (Clip, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	c, ok := ix.clips[key]
	return c, ok
}

// Wait returns the clip at key once it is indexed, or ctx's error.
func (ix *Index) Wait(ctx context.Context, key string) (Clip, error) {
	for {
		ix.mu.Lock()
		c, ok := ix.clips[key]
		changed := ix.changed
		ix.mu.Unlock()
		if ok {
			return c, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Clip{}, ctx.Err()
		}
	}
}

// Counts returns the number of indexed clips, failed-upload events and rejected events.
func (ix *Index) Counts() (clips, failed, rejected int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, n := range ix.rejected {
		rejected += n
	}
	return len(ix.clips), ix.failed, rejected
}

// NewConsumer returns a consumer that feeds ix; Start connects it.
func NewConsumer(cfg events.Config, ix *Index) (*events.Consumer, error) {
	return events.NewConsumer(cfg, ix.Handle)
}
