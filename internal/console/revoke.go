package console

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/deviceid"
)

// maxRevocationsFile bounds the revocation file the console reads (as identity does).
const maxRevocationsFile = 256 << 20

// SetRevoked revokes (or restores) a device: it records the change in the Store, then
// writes the whole revocation list to RevocationsFile (the broker and the token workers
// reload it within a second or so: fsnotify, and the broker's sweep disconnects the
// device), then updates the in-process Revocations and calls OnRevoke. A device need not
// be known to be revoked.
func (c *Console) SetRevoked(ctx context.Context, id string, revoked bool) error {
	if err := deviceid.Validate(id); err != nil {
		return err
	}
	c.revMu.Lock()
	defer c.revMu.Unlock()
	if err := c.store.SetRevoked(ctx, id, revoked, c.cfg.Now()); err != nil {
		return err
	}
	ids, err := c.store.RevokedDevices(ctx)
	if err != nil {
		return err
	}
	if err := c.publishRevocations(ids); err != nil {
		return err
	}
	if c.cfg.OnRevoke != nil {
		c.cfg.OnRevoke(id, revoked)
	}
	c.log.Info().Str("device", id).Bool("revoked", revoked).Int("revokedDevices", len(ids)).Msg("revocation changed")
	return nil
}

// syncRevocations runs at start: IDs in the file that the database does not have
// revoked (an operator's hand edit) are revoked in the database, then the file and the
// in-process list are set from the database.
func (c *Console) syncRevocations(ctx context.Context) error {
	c.revMu.Lock()
	defer c.revMu.Unlock()
	if f := c.cfg.RevocationsFile; f != "" {
		inFile, err := readRevocationIDs(f)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("console: %w", err)
		}
		known, err := c.store.RevokedDevices(ctx)
		if err != nil {
			return err
		}
		for _, id := range inFile {
			if _, found := slices.BinarySearch(known, id); !found {
				if err := c.store.SetRevoked(ctx, id, true, c.cfg.Now()); err != nil {
					return err
				}
				c.log.Info().Str("device", id).Str("file", f).Msg("revocation found in the file recorded")
			}
		}
	}
	ids, err := c.store.RevokedDevices(ctx)
	if err != nil {
		return err
	}
	if err := c.publishRevocations(ids); err != nil {
		return err
	}
	if c.cfg.OnRevoke != nil {
		for _, id := range ids {
			c.cfg.OnRevoke(id, true)
		}
	}
	return nil
}

// publishRevocations writes the file and sets the in-process list.
func (c *Console) publishRevocations(ids []string) error {
	if f := c.cfg.RevocationsFile; f != "" {
		if err := writeRevocationsFile(f, ids, c.cfg.Now()); err != nil {
			return fmt.Errorf("console: the change is recorded, but the revocation file was not written: %w", err)
		}
	}
	if c.cfg.Revocations != nil {
		c.cfg.Revocations.Set(ids)
	}
	return nil
}

// writeRevocationsFile replaces path with the list, atomically (internal/atomicfile: a
// synced temporary file renamed over path, which is what the watchers expect). The file is world-readable: device IDs are not secrets,
// and the broker and workers may run as other users.
func writeRevocationsFile(path string, ids []string, now time.Time) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# clipgate revoked devices, one ID a line. Written by the console at %s;\n", now.UTC().Format(time.RFC3339))
	b.WriteString("# change it with the console (IDs added here by hand are taken in at its next start).\n")
	for _, id := range ids {
		b.WriteString(id)
		b.WriteByte('\n')
	}
	return atomicfile.Write(path, b.Bytes(), 0o644)
}

// readRevocationIDs reads a revocation file in identity's format: one device ID a line,
// '#' comments, blank lines and surrounding spaces ignored. It returns the IDs sorted
// and unique; an invalid ID is an error naming its line.
func readRevocationIDs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("revocation file %s is not a regular file", path)
	} else if st.Size() > maxRevocationsFile {
		return nil, fmt.Errorf("revocation file %s is larger than %d bytes", path, maxRevocationsFile)
	}
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for line := 1; sc.Scan(); line++ {
		l, _, _ := strings.Cut(sc.Text(), "#")
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if err := deviceid.Validate(l); err != nil {
			return nil, fmt.Errorf("revocation file %s:%d: %w", path, line, err)
		}
		ids = append(ids, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("revocation file %s: %w", path, err)
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}
