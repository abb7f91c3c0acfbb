package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/clipgate/clipgate/devicekit"
)

type uploadCmd struct {
	Files []string `arg:"" name:"FILE" help:"Files to upload; each becomes a clip named after its base name (Unicode kept; control characters, '/' and '\\' become '_'), dated by its modification time. A name another recording of that day holds is never overwritten: the clip goes under NAME~CRC64.EXT."`
}

// upload uploads every file and writes one result line per file on stdout:
//
//	ok  FILE -> oss://BUCKET/KEY size=N crc64=N event=ID
//	FAIL FILE: ERROR
//
// It returns errReported if any file failed. A file that is missing or unreadable fails
// alone; when the device cannot get credentials at all, or they are refused for good
// (revoked, denied, ...), the files not yet uploaded fail with that error.
//
// While `device watch` runs on the same state directory, the files are handed to its
// spool instead (handOff), as "queued FILE -> SPOOL/NAME" lines: a second connection
// with the device's client ID would disconnect the watcher.
func (m *Main) upload(ctx context.Context) error {
	files := m.cli.Upload.Files
	items := make([]uploadItem, len(files))
	var total int64
	for i, path := range files {
		items[i] = statClip(path)
		total += items[i].size
	}
	if err := checkDuplicateNames(items); err != nil {
		return err
	}

	kit, kc, err := m.newKit()
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
	if err := m.dial(ctx, kit, kc); err != nil {
		return err
	}
	// Ask for credentials once up front: a device that gets none fails fast and once.
	cctx, cancel := context.WithTimeout(ctx, m.cli.Timeout)
	_, credErr := kit.Credentials(cctx)
	cancel()

	out := m.newResults(total)
	failed := 0
	for i := range items {
		it := &items[i]
		switch {
		case it.err != nil:
		case credErr != nil:
			it.err = credErr
		case ctx.Err() != nil:
			it.err = errors.New("not uploaded: interrupted")
		default:
			out.start(i, len(items), it.clip.Name)
			ev, err := kit.Upload(ctx, it.clip)
			if err != nil {
				it.err = err
				var ae *devicekit.AuthError
				if errors.As(err, &ae) && ae.Terminal() {
					credErr = err // the next files would be refused the same way
				}
			} else {
				out.line(fmt.Sprintf("ok  %s -> oss://%s/%s size=%d crc64=%s event=%s", it.path, ev.Bucket, ev.Key, ev.Size, ev.CRC64, ev.ID), it.size)
				continue
			}
		}
		failed++
		out.line(fmt.Sprintf("FAIL %s: %v", it.path, it.err), it.size)
	}
	out.finish()
	if failed > 0 {
		if failed > 1 || len(items) > 1 {
			fmt.Fprintf(m.Stderr, "device: %d of %d uploads failed\n", failed, len(items))
		}
		return errReported
	}
	return nil
}

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
			return usagef("%s and %s would both be stored as clip %s of %s; rename one", prev, abs, it.clip.Name, key[:10])
		}
		seen[key] = abs
	}
	return nil
}

// clipName is the clip name of a file: its base name, sanitised.
func clipName(path string) string { return devicekit.SanitizeClipName(filepath.Base(path)) }

// results writes the result lines, under a progress bar when stdout is a terminal. The
// bar counts bytes of finished files: devicekit reports no progress within a file.
type results struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func (m *Main) newResults(total int64) *results {
	r := &results{w: m.Stdout}
	if total > 0 && m.IsTerminal(m.Stdout) {
		r.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(m.Stdout),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetPredictTime(false),
		)
	}
	return r
}

// start shows that file i of n is being uploaded.
func (r *results) start(i, n int, name string) {
	if r.bar != nil {
		r.bar.Describe(fmt.Sprintf("[%d/%d] %s", i+1, n, name))
	}
}

// line prints a result line and advances the bar by the file's size.
func (r *results) line(s string, size int64) {
	if r.bar == nil {
		fmt.Fprintln(r.w, s)
		return
	}
	_ = r.bar.Clear()
	fmt.Fprintln(r.w, s)
	_ = r.bar.Add64(size) // redraws the bar below the line (or clears it when full)
}

func (r *results) finish() {
	if r.bar != nil && !r.bar.IsFinished() {
		_ = r.bar.Clear()
	}
}
