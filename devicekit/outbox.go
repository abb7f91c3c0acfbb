package devicekit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/protocol"
)

// errOutbox is wrapped by failures to store an event durably.
var errOutbox = errors.New("devicekit: event outbox")

// The outbox keeps every event, one file each (<StateDir>/outbox/<id>.json), from before
// its first publication until the broker acknowledges it. It is flushed after every
// connect, so events survive broker outages and device restarts (at least once; consumers
// deduplicate by event ID). An entry is synced to disk before its first publication,
// except Upload's completed events, which are synced only when that publication goes
// unacknowledged: until then the Upload has not returned, and calling it again announces
// the clip under the same ID (see "Crash safety" in upload.go).

func (k *Kit) outboxPath(id string) string {
	return filepath.Join(k.cfg.StateDir, outboxDir, id+".json")
}

// announce stores ev in the outbox, synced, publishes it and waits up to RequestTimeout
// for the acknowledgement. An error wrapping errOutbox means the event is not stored; any
// other error means it stays queued.
func (k *Kit) announce(ev *clipgate.UploadEvent) error { return k.queue(ev, true) }

// announceUpload is announce for the completed event of an Upload: the outbox entry is
// synced only if the broker does not acknowledge the event in time.
func (k *Kit) announceUpload(ev *clipgate.UploadEvent) error { return k.queue(ev, false) }

func (k *Kit) queue(ev *clipgate.UploadEvent, syncFirst bool) error {
	b, err := protocol.Encode(ev)
	if err != nil {
		return fmt.Errorf("%w: encoding event %s: %v", errOutbox, ev.ID, err)
	}
	path := k.outboxPath(ev.ID)
	if err := writeFile(path, b, syncFirst); err != nil {
		return fmt.Errorf("%w: %w", errOutbox, err)
	}
	step("outbox")
	ctx, cancel := context.WithTimeout(k.ctx, k.cfg.RequestTimeout)
	defer cancel()
	if err := k.publish(ctx, k.eventTopic, b); err != nil {
		if !syncFirst {
			// The event waits for the next flush: on disk. (A flush that published and
			// removed it meanwhile leaves nothing to sync.)
			if serr := atomicfile.Sync(path); serr != nil && !errors.Is(serr, fs.ErrNotExist) {
				return fmt.Errorf("%w: %w", errOutbox, serr)
			}
		}
		k.retryFlush()
		return err
	}
	step("acknowledged")
	k.removeOutbox(path)
	return nil
}

func (k *Kit) removeOutbox(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		k.log.Warn().Err(err).Str("path", path).Msg("removing an acknowledged event from the outbox")
	}
}

// flushOutbox publishes the queued events in the background, one at a time, oldest name
// first; it stops at the first failure, and tries again after a backoff while connected
// (retryFlush) and after the next connect.
func (k *Kit) flushOutbox() {
	if !k.flushing.CompareAndSwap(false, true) {
		return
	}
	if !k.enter() {
		k.flushing.Store(false)
		return
	}
	go func() {
		defer k.wg.Done()
		defer k.flushing.Store(false)
		n, err := k.flush()
		if n > 0 || err != nil {
			k.log.Info().Int("published", n).AnErr("stopped", err).Msg("event outbox flushed")
		}
		if err != nil {
			k.retryFlush()
		} else {
			k.flushFail.Store(0)
		}
	}()
}

// flush publishes the outbox; it returns how many events it published.
func (k *Kit) flush() (int, error) {
	dir := filepath.Join(k.cfg.StateDir, outboxDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // published meanwhile by Upload
		}
		if err != nil {
			return n, err
		}
		if len(b) == 0 {
			// An entry written without a sync and cut short by a power loss: its Upload
			// never returned, and announces the clip again when it is called again.
			k.log.Warn().Str("path", path).Msg("empty outbox entry (left by a power loss) removed")
			k.removeOutbox(path)
			continue
		}
		if _, err := protocol.DecodeUploadEvent(b); err != nil {
			// Never publish garbage; keep it for inspection, out of the way.
			k.log.Error().Err(err).Str("path", path).Msg("corrupt outbox entry set aside")
			os.Rename(path, path+".bad")
			continue
		}
		ctx, cancel := context.WithTimeout(k.ctx, k.cfg.RequestTimeout)
		err = k.publish(ctx, k.eventTopic, b)
		cancel()
		if err != nil {
			return n, err
		}
		k.removeOutbox(path)
		n++
	}
	return n, nil
}
