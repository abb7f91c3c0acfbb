package devicekit

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// Sweeping the state directory.
//
// A kill can leave the temporary file of an atomic write (internal/atomicfile: ".{name}.tmp-*") in
// any state subdirectory; New removes those. Uploads can be abandoned: their file was
// deleted (by the user, or by a Spool bound) or rewritten, or they failed and were never
// tried again. The sweep removes their journal entries and checkpoints and aborts the
// multipart uploads they started, whose parts OSS would otherwise keep (and bill) until
// the bucket's lifecycle rule removes them.

const (
	// stateMaxAge is how long a journal entry or checkpoint untouched by any upload is
	// kept: uploads that failed and were never tried again.
	stateMaxAge = 7 * 24 * time.Hour
	// tmpMaxAge is the age from which New removes a temporary file: younger ones may be
	// the writes of another process on the same StateDir (a CLI upload beside a watcher).
	tmpMaxAge = time.Minute
	// sweepEvery is the least time between two sweeps started by Upload.
	sweepEvery = time.Hour
	// sweepTimeout bounds a background sweep.
	sweepTimeout = 2 * time.Minute
)

// sweepTemp removes the leftovers of interrupted atomic writes from the state directories.
func (k *Kit) sweepTemp() {
	cutoff := time.Now().Add(-tmpMaxAge)
	for _, sub := range []string{"", checkpointDir, journalDir, outboxDir, spoolDir, recordingsDir} {
		dir := filepath.Join(k.cfg.StateDir, sub)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") || !strings.Contains(e.Name(), ".tmp-") || !e.Type().IsRegular() {
				continue
			}
			if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
				if os.Remove(filepath.Join(dir, e.Name())) == nil {
					k.log.Info().Str("file", filepath.Join(sub, e.Name())).Msg("leftover of an interrupted write removed")
				}
			}
		}
	}
}

// sweepSoon starts a sweep of abandoned uploads in the background, unless one ran within
// sweepEvery (force: regardless). A sweep asked for while one runs runs after it.
func (k *Kit) sweepSoon(force bool) {
	if last := k.lastSweep.Load(); !force && last != 0 && time.Since(time.Unix(0, last)) < sweepEvery {
		return
	}
	k.sweepAgain.Store(true)
	if !k.sweeping.CompareAndSwap(false, true) {
		return
	}
	if !k.enter() {
		k.sweeping.Store(false)
		return
	}
	go func() {
		defer k.wg.Done()
		for k.sweepAgain.Swap(false) {
			k.lastSweep.Store(time.Now().UnixNano())
			ctx, cancel := context.WithTimeout(k.ctx, sweepTimeout)
			n, err := k.sweepUploads(ctx)
			cancel()
			if n > 0 || err != nil {
				k.log.Info().Int("aborted", n).AnErr("stopped", err).Msg("abandoned uploads swept")
			}
			if k.onSweep != nil {
				k.onSweep(n, err)
			}
		}
		k.sweeping.Store(false)
		if k.sweepAgain.Load() { // asked for between the loop's end and the line above
			k.sweepSoon(true)
		}
	}()
}

// sweepUploads abandons the uploads whose journal entry names a file that is gone or
// changed, or that nothing touched for stateMaxAge, and the checkpoints without a journal
// entry untouched as long: it aborts their multipart uploads, then removes their state.
// An upload whose abort fails (the network) stays for the next sweep. It returns the
// number of uploads aborted.
func (k *Kit) sweepUploads(ctx context.Context) (int, error) {
	cutoff := time.Now().Add(-stateMaxAge)
	var bucket *oss.Bucket
	bucketOf := func() (*oss.Bucket, error) {
		if bucket != nil {
			return bucket, nil
		}
		creds, err := k.Credentials(ctx)
		if err != nil {
			return nil, err
		}
		bucket, err = k.bucketFor(ctx, creds.OSS)
		return bucket, err
	}
	aborted := 0
	var firstErr error
	note := func(n int, err error) {
		aborted += n
		if firstErr == nil {
			firstErr = err
		}
	}

	jdir := filepath.Join(k.cfg.StateDir, journalDir)
	live := make(map[string]bool) // event IDs of the journal entries kept
	entries, _ := os.ReadDir(jdir)
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(jdir, name)
		var j journal
		b, err := os.ReadFile(path)
		fi, ferr := e.Info()
		if err != nil || ferr != nil {
			continue
		}
		parsed := json.Unmarshal(b, &j) == nil && protocolID(j.ID)
		if !abandoned(&j, parsed, fi, cutoff) {
			live[j.ID] = true
			continue
		}
		if _, busy := k.uploading.LoadOrStore(path, struct{}{}); busy {
			live[j.ID] = true
			continue
		}
		cpPath := ""
		if parsed {
			cpPath = filepath.Join(k.cfg.StateDir, checkpointDir, j.ID+".cp")
		}
		n, err := k.abandonCheckpoint(ctx, cpPath, bucketOf)
		note(n, err)
		if err == nil {
			if os.Remove(path) == nil {
				k.log.Info().Str("file", j.File).Str("key", j.target()).Msg("abandoned upload forgotten")
			}
		} else {
			live[j.ID] = true
		}
		k.uploading.Delete(path)
	}

	cdir := filepath.Join(k.cfg.StateDir, checkpointDir)
	cps, _ := os.ReadDir(cdir)
	for _, e := range cps {
		id, ok := strings.CutSuffix(e.Name(), ".cp")
		if !ok || live[id] || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(cutoff) {
			note(k.abandonCheckpoint(ctx, filepath.Join(cdir, e.Name()), bucketOf))
		}
	}
	return aborted, firstErr
}

// abandoned reports whether the upload of journal entry j (parsed: it was readable; fi:
// its file info) is abandoned.
func abandoned(j *journal, parsed bool, fi fs.FileInfo, cutoff time.Time) bool {
	switch {
	case fi.ModTime().Before(cutoff):
		return true
	case fi.Size() == 0:
		return true // an unsynced write cut short by a power loss: nothing to abort
	case !parsed || j.File == "":
		return false // an entry being written, or of an older kit: left to the age rule
	}
	st, err := os.Stat(j.File)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	return err == nil && (st.Size() != j.Size || st.ModTime().UnixNano() != j.MTime)
}

// abandonCheckpoint aborts the multipart upload of the checkpoint at path (if any) and
// removes it; it returns 1 if it aborted one. On a failure to abort it keeps the
// checkpoint and returns the error.
func (k *Kit) abandonCheckpoint(ctx context.Context, path string, bucketOf func() (*oss.Bucket, error)) (int, error) {
	if path == "" {
		return 0, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	var cp mpCheckpoint
	if err != nil || json.Unmarshal(b, &cp) != nil || cp.UploadID == "" || cp.Key == "" {
		os.Remove(path) // unreadable: nothing to abort with
		return 0, nil
	}
	bucket, err := bucketOf()
	if err != nil {
		return 0, err
	}
	n := 0
	if cp.Bucket == bucket.BucketName {
		if err := k.abortUpload(ctx, bucket, cp.Key, cp.UploadID); err != nil {
			return 0, err
		}
		n = 1
	} else {
		k.log.Warn().Str("bucket", cp.Bucket).Str("upload", cp.UploadID).Msg("multipart upload in another bucket left to its lifecycle rule")
	}
	os.Remove(path)
	return n, nil
}
