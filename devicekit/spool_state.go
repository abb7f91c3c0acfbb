package devicekit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/protocol"
)

// spoolDir is the subdirectory of StateDir with the records of uploaded clips that are
// not yet removed from their spool directory.
const spoolDir = "spool"

// record says that a clip (this name, size and modification time in Dir) is uploaded,
// with its event: a restart removes the clip instead of uploading it again.
type record struct {
	Dir   string                `json:"dir"`
	Name  string                `json:"name"`
	Size  int64                 `json:"size"`
	MTime int64                 `json:"mtime"` // UnixNano
	Event *clipgate.UploadEvent `json:"event"`
}

func (s *Spool) recordPath(name string, st stat) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%d", s.cfg.Dir, name, st.size, st.mtime.UnixNano()))
	return filepath.Join(s.stateDir, hex.EncodeToString(sum[:16])+".json")
}

func (s *Spool) saveRecord(c *spoolClip, st stat, ev *clipgate.UploadEvent) error {
	b, err := json.Marshal(record{Dir: s.cfg.Dir, Name: c.name, Size: st.size, MTime: st.mtime.UnixNano(), Event: ev})
	if err != nil {
		return err
	}
	return writeFileAtomic(s.recordPath(c.name, st), b)
}

// loadRecord returns the record of c as it is now, or nil.
func (s *Spool) loadRecord(c *spoolClip) *record {
	b, err := os.ReadFile(s.recordPath(c.name, stat{c.size, c.mtime}))
	if err != nil {
		return nil
	}
	var r record
	if json.Unmarshal(b, &r) != nil || r.Dir != s.cfg.Dir || r.Name != c.name || r.Size != c.size ||
		r.MTime != c.mtime.UnixNano() || r.Event == nil || protocol.ValidateUploadEvent(r.Event) != nil {
		return nil
	}
	return &r
}

func (s *Spool) removeRecord(name string, st stat) {
	if err := os.Remove(s.recordPath(name, st)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn().Err(err).Str("file", name).Msg("removing the upload record")
	}
}

// pruneRecords removes the records of this Dir whose clip is gone or changed: the
// removal they announce happened (the spool stopped before the record went).
func (s *Spool) pruneRecords() {
	entries, err := os.ReadDir(s.stateDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(s.stateDir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r record
		if json.Unmarshal(b, &r) != nil {
			s.log.Warn().Str("path", p).Msg("corrupt spool record removed")
			os.Remove(p)
			continue
		}
		if r.Dir != s.cfg.Dir {
			// Another spool's; dropped once that spool has not run for a long time.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > stateMaxAge {
				os.Remove(p)
			}
			continue
		}
		fi, err := os.Lstat(s.path(r.Name))
		if err != nil || fi.Size() != r.Size || fi.ModTime().UnixNano() != r.MTime {
			os.Remove(p)
		}
	}
}

// stableID derives the event ID of a dropped or rejected clip from what identifies it,
// so that announcing it again (after a crash) repeats the ID.
func (s *Spool) stableID(kind string, c *spoolClip) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "clipgate-spool-v1\x00%s\x00%s\x00%s\x00%s\x00%d\x00%d",
		kind, s.kit.cfg.DeviceID, s.cfg.Dir, c.name, c.size, c.mtime.UnixNano()))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// failedEvent is the "failed" event of a clip the spool gives up on. It names the object
// key the clip would have had when the kit holds credentials (the key needs the prefix).
func (s *Spool) failedEvent(kind string, c *spoolClip, reason string) *clipgate.UploadEvent {
	name := SanitizeClipName(filepath.Base(c.name))
	ev := &clipgate.UploadEvent{
		V:           protocol.Version,
		ID:          s.stableID(kind, c),
		Device:      s.kit.cfg.DeviceID,
		Status:      clipgate.StatusFailed,
		Size:        c.size,
		RecordedAt:  c.mtime.UTC(),
		UploadedAt:  s.kit.now().UTC(),
		Attempts:    c.attempts,
		Metadata:    s.metadata(c),
		ContentType: ContentTypeOf(name),
		Error:       truncate(reason, protocol.MaxMessageLen),
	}
	if creds := s.kit.cache.Load(); creds != nil {
		key := objectKey(s.kit.devicePrefix(creds.OSS), c.mtime, name)
		if len(key) <= protocol.MaxObjectKeyLen {
			ev.Bucket, ev.Key = creds.OSS.Bucket, key
		}
	}
	return ev
}

// reject announces a clip that cannot be uploaded as it is and sets it aside until it
// changes.
func (s *Spool) reject(c *spoolClip, why error) {
	c.rejected = true
	ev := s.failedEvent("rejected", c, "rejected: "+why.Error())
	if err := s.queueEvent(ev); err != nil {
		s.log.Error().Err(err).Str("file", c.name).Msg("the rejection could not be queued for announcement")
	}
	s.log.Warn().Err(why).Str("file", c.name).Str("event", ev.ID).Msg("clip rejected")
	s.emit(SpoolEvent{Kind: SpoolRejected, Path: s.path(c.name), Size: c.size, Event: ev, Err: why})
}

// drop deletes a clip for the bounds and announces it. A clip that is in fact uploaded
// (its record exists) is finished instead.
func (s *Spool) drop(c *spoolClip, reason string) error {
	if rec := s.loadRecord(c); rec != nil {
		return s.finish(c, stat{c.size, c.mtime}, rec.Event)
	}
	ev := s.failedEvent("dropped", c, reason)
	// The event is made durable first; if that fails (the disk is full, which may be why
	// clips are dropped), the clip is deleted anyway and the event tried once more.
	qerr := s.queueEvent(ev)
	path := s.path(c.name)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("devicekit: spool: deleting dropped clip %s: %w", path, err)
	}
	if qerr != nil {
		if qerr = s.queueEvent(ev); qerr != nil {
			s.log.Error().Err(qerr).Str("file", c.name).Str("event", ev.ID).Msg("the drop could not be queued for announcement")
		}
	}
	delete(s.clips, c.name)
	s.kit.sweepSoon(true) // abort what an interrupted upload of it left in OSS
	s.log.Warn().Str("file", c.name).Str("event", ev.ID).Str("reason", reason).Msg("clip dropped")
	s.emit(SpoolEvent{Kind: SpoolDropped, Path: path, Size: c.size, Event: ev})
	return nil
}

// queueEvent stores ev in the kit's outbox (durably) and has it published in the
// background; while the camera is offline it waits there for the next connection.
func (s *Spool) queueEvent(ev *clipgate.UploadEvent) error {
	b, err := protocol.Encode(ev)
	if err != nil {
		return fmt.Errorf("%w: encoding event %s: %v", errOutbox, ev.ID, err)
	}
	path := s.kit.outboxPath(ev.ID)
	if err := writeFileAtomic(path, b); err != nil {
		return fmt.Errorf("%w: %w", errOutbox, err)
	}
	s.queued = true
	s.pub.push(path)
	return nil
}

// publisher hands outbox entries written by the spool to its publishing goroutine.
type publisher struct {
	mu    sync.Mutex
	queue []string
	kick  chan struct{}
}

func (p *publisher) push(path string) {
	p.mu.Lock()
	p.queue = append(p.queue, path)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *publisher) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queue
	p.queue = nil
	return q
}

// publishLoop publishes queued events, one at a time. At the first failure it leaves the
// rest in the outbox, which the kit flushes after its next connect.
func (s *Spool) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.pub.kick:
		}
		for _, path := range s.pub.take() {
			b, err := os.ReadFile(path)
			if err != nil {
				continue // published (and removed) by the kit's own flush meanwhile
			}
			pctx, cancel := context.WithTimeout(ctx, s.kit.cfg.RequestTimeout)
			err = s.kit.publish(pctx, s.kit.eventTopic, b)
			cancel()
			if err != nil {
				s.log.Debug().Err(err).Msg("events stay in the outbox until the next connection")
				break
			}
			s.kit.removeOutbox(path)
		}
	}
}

// fileMetadata is the event metadata of a spooled clip: its file name, as valid UTF-8
// of at most MaxMetadataLen bytes.
func fileMetadata(name string) map[string]string {
	return map[string]string{"file": truncate(strings.ToValidUTF8(name, "\uFFFD"), protocol.MaxMetadataLen)}
}
