package devicekit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A Kit holds its StateDir alone: two kits on one state directory would resume each
// other's uploads and, as they share the device ID (the MQTT client ID), the broker would
// disconnect one whenever the other connects. New takes an exclusive flock(2) on
// StateDir/lock and writes into that file who holds it (StateHolder); the lock lasts until
// Close, or the end of the process.

// lockFile is the name of the lock file in StateDir.
const lockFile = "lock"

// holderRecordSize is the fixed size of the record in the lock file: every update is one
// write at offset 0 of this many bytes (JSON padded with spaces), never a truncation, so
// that a reader sees no empty file in between.
const holderRecordSize = 4096

// ErrStateInUse is matched (errors.Is) by the StateInUseError New returns when another
// Kit holds the state directory.
var ErrStateInUse = errors.New("devicekit: state directory in use")

// StateHolder describes the Kit that holds a state directory, as it recorded itself.
type StateHolder struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"`          // the holder's command line
	Spools  []string  `json:"spools,omitempty"` // directories its running Spools watch
	Since   time.Time `json:"since"`
}

// StateInUseError is the error New returns when another Kit, in this process or another,
// holds Config.StateDir. Holder says which; its PID is 0 when the record could not be
// read.
type StateInUseError struct {
	StateDir string
	Holder   StateHolder
}

// Error names the state directory and the holding process.
func (e *StateInUseError) Error() string {
	if e.Holder.PID == 0 {
		return fmt.Sprintf("devicekit: state directory %s is in use by another process", e.StateDir)
	}
	return fmt.Sprintf("devicekit: state directory %s is in use by process %d (%s)", e.StateDir, e.Holder.PID, e.Holder.Command)
}

// Is reports whether target is ErrStateInUse.
func (e *StateInUseError) Is(target error) bool { return target == ErrStateInUse }

// stateLock is a held lock on a state directory.
type stateLock struct {
	f *os.File

	mu     sync.Mutex
	holder StateHolder
}

// lockState takes the lock of dir, or returns a *StateInUseError naming its holder.
func lockState(dir string) (*stateLock, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, configErr("StateDir: %v", err)
	}
	if err := flock(f); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &StateInUseError{StateDir: dir, Holder: readHolder(f)}
		}
		return nil, fmt.Errorf("devicekit: lock %s: %w", path, err)
	}
	l := &stateLock{f: f, holder: StateHolder{PID: os.Getpid(), Command: commandLine(), Since: time.Now().UTC()}}
	if err := l.write(); err != nil {
		f.Close()
		return nil, fmt.Errorf("devicekit: lock %s: %w", path, err)
	}
	return l, nil
}

// flock takes an exclusive lock on f without waiting, retrying an interrupted call.
func flock(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			return err
		}
	}
}

// commandLine is the process's command line, shortened to fit the record.
func commandLine() string {
	args := append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...)
	s := strings.Join(args, " ")
	if len(s) > 1024 {
		s = s[:1024] + "..."
	}
	return s
}

// write records l.holder in the lock file. Callers hold l.mu or own l exclusively.
func (l *stateLock) write() error {
	b, err := json.Marshal(l.holder)
	if err != nil {
		return err
	}
	if len(b) > holderRecordSize {
		// Too many spools to list: keep who holds the lock.
		h := l.holder
		h.Spools = nil
		if b, err = json.Marshal(h); err != nil {
			return err
		}
	}
	rec := bytes.Repeat([]byte{' '}, holderRecordSize)
	copy(rec, b)
	_, err = l.f.WriteAt(rec, 0)
	return err
}

// readHolder reads the record of the process that holds f's lock. The holder writes it
// right after taking the lock: an empty or partial record is read again a few times.
func readHolder(f *os.File) StateHolder {
	buf := make([]byte, holderRecordSize)
	for try := 0; ; try++ {
		var h StateHolder
		n, _ := f.ReadAt(buf, 0)
		if err := json.Unmarshal(buf[:n], &h); err == nil && h.PID > 0 {
			return h
		}
		if try == 20 {
			return StateHolder{}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// addSpool records that a Spool watching dir runs on the kit; the returned func removes
// the record. A failure to update the record is logged by the caller's kit.
func (l *stateLock) addSpool(dir string) (remove func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holder.Spools = append(l.holder.Spools, dir)
	err = l.write()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if i := slices.Index(l.holder.Spools, dir); i >= 0 {
			l.holder.Spools = slices.Delete(l.holder.Spools, i, i+1)
			_ = l.write()
		}
	}, err
}

// release gives up the lock.
func (l *stateLock) release() {
	if l != nil {
		l.f.Close() // closing the last descriptor releases the flock
	}
}
