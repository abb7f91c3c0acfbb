package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/cli"
)

type uploadCmd struct {
	Files []string `arg:"" name:"FILE" help:"Files to upload; each becomes a clip named after its base name (Unicode kept; control characters, '/' and '\\' become '_'), dated by its modification time. A name another recording of that day holds is never overwritten: the clip goes under NAME~CRC64.EXT."`
}

// upload uploads every file and writes one result line per file on stdout:
//
//	ok  FILE -> oss://BUCKET/KEY size=N crc64=N event=ID
//	FAIL FILE: ERROR
//
// It returns cli.ErrReported if any file failed. A file that is missing or unreadable fails
// alone; when the device cannot get credentials at all, or they are refused for good
// (revoked, denied, ...), the files not yet uploaded fail with that error. An interrupt
// (ctx ends: SIGINT, SIGTERM) fails the file in progress and the rest, saying that the
// same command resumes them. On a terminal, a status line follows the file in progress
// (results).
//
// While `device watch` runs on the same state directory, the files are handed to its
// spool instead (handOff), as "queued FILE -> SPOOL/NAME" lines: a second connection
// with the device's client ID would disconnect the watcher.
func (m *Main) upload(ctx context.Context) error {
	files := m.cli.Upload.Files
	items := make([]uploadItem, len(files))
	for i, path := range files {
		items[i] = statClip(path)
	}
	if err := checkDuplicateNames(items); err != nil {
		return err
	}

	kit, kc, err := m.newKit(true)
	var inUse *devicekit.StateInUseError
	if errors.As(err, &inUse) {
		if len(inUse.Holder.Spools) > 0 {
			return m.handOff(items, inUse) // a watcher runs: it uploads them
		}
		return busyError(inUse, kc.DeviceID)
	}
	if err != nil {
		return err
	}
	defer kit.Close()
	var credErr error
	if err := m.dial(ctx, kit, kc); err != nil {
		if ctx.Err() == nil {
			return err
		}
		credErr = err // interrupted: every file says so below
	} else {
		// Ask for credentials once up front: a device that gets none fails fast and once.
		cctx, cancel := context.WithTimeout(ctx, m.cli.Timeout)
		_, credErr = kit.Credentials(cctx)
		cancel()
	}

	out := m.newResults()
	failed, interrupted := 0, false
	for i := range items {
		it := &items[i]
		switch {
		case it.err != nil:
		case ctx.Err() != nil:
			it.err, interrupted = errNotStarted, true
		case credErr != nil:
			it.err = credErr
		default:
			it.clip.Progress = out.start(i, len(items), it.clip.Name, it.size)
			ev, err := kit.Upload(ctx, it.clip)
			switch {
			case err == nil:
				out.line(fmt.Sprintf("ok  %s -> oss://%s/%s size=%d crc64=%s event=%s", it.path, ev.Bucket, ev.Key, ev.Size, ev.CRC64, ev.ID))
				continue
			case ctx.Err() != nil:
				// Not the SDK's error, which quotes the request's URL: what to do about it.
				it.err, interrupted = errInterrupted, true
			default:
				it.err = err
				var ae *clipgate.AuthError
				if errors.As(err, &ae) && ae.Terminal() {
					credErr = err // the next files would be refused the same way
				}
			}
		}
		failed++
		out.line(fmt.Sprintf("FAIL %s: %v", it.path, it.err))
	}
	out.finish()
	if interrupted {
		fmt.Fprintf(m.Stderr, "device: interrupted: %d of %d files not uploaded; run the same command again to upload them (an interrupted upload resumes where it stopped)\n", failed, len(items))
		return cli.ErrReported
	}
	if failed > 0 {
		if failed > 1 || len(items) > 1 {
			fmt.Fprintf(m.Stderr, "device: %d of %d uploads failed\n", failed, len(items))
		}
		return cli.ErrReported
	}
	return nil
}

// Errors of the files an interrupt (SIGINT, SIGTERM) stopped.
var (
	errInterrupted = errors.New("interrupted; running the same command again resumes the upload")
	errNotStarted  = errors.New("not uploaded: interrupted")
)

// uploadItem is one file to upload and what is known of it before the upload.
type uploadItem struct {
	path string
	clip devicekit.Clip
	size int64
	err  error // set when the file cannot be uploaded
}

// statClip checks that path is a regular file and builds its clip.
func statClip(path string) uploadItem {
	it := uploadItem{path: path}
	fi, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already on the result line
		}
		it.err = err
		return it
	}
	if !fi.Mode().IsRegular() {
		it.err = fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
		return it
	}
	it.size = fi.Size()
	it.clip = devicekit.Clip{Path: path, Name: clipName(path), RecordedAt: fi.ModTime()}
	return it
}

// checkDuplicateNames refuses two different files that would get the same object key
// (same clip name and day): the second upload would replace the first.
func checkDuplicateNames(items []uploadItem) error {
	seen := make(map[string]string, len(items))
	for _, it := range items {
		if it.err != nil {
			continue
		}
		key := it.clip.RecordedAt.UTC().Format(time.DateOnly) + "/" + it.clip.Name
		abs, err := filepath.Abs(it.path)
		if err != nil {
			abs = it.path
		}
		if prev, ok := seen[key]; ok && prev != abs {
			return cli.Usagef("%s and %s would both be stored as clip %s of %s; rename one", prev, abs, it.clip.Name, key[:10])
		}
		seen[key] = abs
	}
	return nil
}

// clipName is the clip name of a file: its base name, sanitised.
func clipName(path string) string { return devicekit.SanitizeClipName(filepath.Base(path)) }
