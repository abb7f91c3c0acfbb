package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/cli"
)

// A camera's processes share its state directory and its MQTT client ID (the device ID),
// so only one of them may run at a time: a second connection would make the broker
// disconnect the first. devicekit locks the state directory; the commands that find it
// held cooperate with the holder when they can (upload hands its files to a running
// watcher's spool) and otherwise say which process holds it.

// busyError explains that the process holding the state directory stops the command.
func busyError(e *devicekit.StateInUseError, deviceID string) error {
	who := "another process"
	if e.Holder.PID > 0 {
		who = fmt.Sprintf("process %d (%s)", e.Holder.PID, e.Holder.Command)
	}
	return fmt.Errorf("%s is running as %s on the state directory %s: a second connection as %s would disconnect it from the broker; wait for it to end, or stop it",
		who, deviceID, e.StateDir, deviceID)
}

// handOff gives the files to the spool of the watcher that holds the state directory,
// instead of uploading them itself: the watcher uploads them as it does its recorder's
// clips. One line per file on stdout:
//
//	queued FILE -> SPOOL/NAME
//	FAIL FILE: ERROR
func (m *Main) handOff(items []uploadItem, e *devicekit.StateInUseError) error {
	spool := e.Holder.Spools[0]
	failed := 0
	for _, it := range items {
		err := it.err
		if err == nil && it.size == 0 {
			// Refused as Upload refuses it, rather than left to the spool's rejection.
			err = fmt.Errorf("%w (0 bytes): nothing to upload", devicekit.ErrEmptyClip)
		}
		if err == nil {
			var dest string
			if dest, err = handFile(it.path, it.clip.RecordedAt, spool); err == nil {
				fmt.Fprintf(m.Stdout, "queued %s -> %s\n", it.path, dest)
				continue
			}
		}
		failed++
		fmt.Fprintf(m.Stdout, "FAIL %s: %v\n", it.path, err)
	}
	if failed < len(items) {
		fmt.Fprintf(m.Stderr, "device: process %d (%s) watches %s for this device: the files were handed to it (linked or copied; yours stay where they are), and it uploads them\n",
			e.Holder.PID, e.Holder.Command, spool)
	}
	if failed > 0 {
		return cli.ErrReported
	}
	return nil
}

// maxHandOffNames bounds the names tried when the file's own name is taken in the spool.
const maxHandOffNames = 100

// handFile puts path into the spool directory under its own name (or NAME-2.EXT, ... when
// a different file holds it), as a hard link or else a copy dated mtime, renamed into
// place so that the watcher sees a finished file. It returns the path in the spool.
func handFile(path string, mtime time.Time, spool string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if filepath.Dir(abs) == spool {
		return abs, nil // already there: the watcher uploads it
	}
	name := filepath.Base(abs)
	if devicekit.SpoolIgnores(name) {
		return "", fmt.Errorf("the watcher's spool ignores names starting with '.' or ending in .tmp or .part; rename the file")
	}
	tmp, err := tempIn(spool)
	if err != nil {
		return "", err
	}
	if err := os.Link(abs, tmp); err != nil {
		// Another filesystem, or hard links not allowed: copy.
		if err := copyFile(abs, tmp, mtime); err != nil {
			os.Remove(tmp)
			return "", err
		}
	}
	ext := filepath.Ext(name)
	for i := 1; i <= maxHandOffNames; i++ {
		dest := filepath.Join(spool, name)
		if i > 1 {
			dest = filepath.Join(spool, strings.TrimSuffix(name, ext)+"-"+strconv.Itoa(i)+ext)
		}
		err := renameNoReplace(tmp, dest)
		if err == nil {
			return dest, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			os.Remove(tmp)
			return "", err
		}
		if same(dest, abs) { // handed over before, not yet uploaded
			os.Remove(tmp)
			return dest, nil
		}
	}
	os.Remove(tmp)
	return "", fmt.Errorf("%s and %d other names are taken in %s", name, maxHandOffNames-1, spool)
}

// tempIn returns a fresh name in dir that a spool ignores.
func tempIn(dir string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return filepath.Join(dir, ".device-upload-"+hex.EncodeToString(b)+".tmp"), nil
}

// same reports whether a and b are the same file.
func same(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// copyFile copies src into the new file dst, synced and dated mtime.
func copyFile(src, dst string, mtime time.Time) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(dst, mtime, mtime)
	}
	return err
}

// linkAndRemove links newpath to oldpath (which fails if newpath exists) and removes
// oldpath.
func linkAndRemove(oldpath, newpath string) error {
	if err := os.Link(oldpath, newpath); err != nil {
		return err
	}
	return os.Remove(oldpath)
}
