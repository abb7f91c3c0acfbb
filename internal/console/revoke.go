package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
)

// maxRevocationsFile bounds the revocation file the console reads (as identity does).
const maxRevocationsFile = 256 << 20

// SetRevoked revokes (or restores) a device: it records the change in the Store, then
// hands the whole list to every component that enforces it (publishRevocations): the
// revocation file (the broker and the token workers reload it within a second or so:
// fsnotify, and the broker's sweep disconnects the device), the signed list on the
// revocation topic, the in-process Revocations, the bucket policy's Deny entries, and
// EMQX (the device is kicked). Then it calls OnRevoke. A device need not be known to be
// revoked. If the change is recorded but a component could not be told, the error says
// which; the periodic bucket-policy sync and the publisher's reconnection catch up.
func (c *Console) SetRevoked(ctx context.Context, id string, revoked bool) error {
	if err := deviceid.Validate(id); err != nil {
		return err
	}
	c.revMu.Lock()
	defer c.revMu.Unlock()
	if err := c.store.SetRevoked(ctx, id, revoked, c.cfg.Now()); err != nil {
		return err
	}
	list, err := c.store.Revocations(ctx)
	if err != nil {
		return err
	}
	errs := c.publishRevocations(ctx, list)
	if revoked && c.cfg.EMQX != nil {
		if err := c.cfg.EMQX.kick(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("kicking the device out of EMQX: %w", err))
		}
	}
	if c.cfg.OnRevoke != nil {
		c.cfg.OnRevoke(id, revoked)
	}
	c.log.Info().Str("device", id).Bool("revoked", revoked).Int("revokedDevices", len(list)).Msg("revocation changed")
	if len(errs) > 0 {
		return fmt.Errorf("console: the change is recorded, but %w", errors.Join(errs...))
	}
	return nil
}

// syncRevocations runs at start: IDs in the file that the database does not have
// revoked (an operator's hand edit) are revoked in the database, then every component
// is given the database's list.
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
		for _, e := range inFile {
			if _, found := slices.BinarySearch(known, e.Device); !found {
				at := e.At
				if at.IsZero() {
					at = c.cfg.Now()
				}
				if err := c.store.SetRevoked(ctx, e.Device, true, at); err != nil {
					return err
				}
				c.log.Info().Str("device", e.Device).Str("file", f).Msg("revocation found in the file recorded")
			}
		}
	}
	list, err := c.store.Revocations(ctx)
	if err != nil {
		return err
	}
	if errs := c.publishRevocations(ctx, list); len(errs) > 0 {
		// The file and the signed list must be right before anything else runs; a failed
		// bucket-policy write is retried by denyLoop.
		for _, err := range errs {
			if !errors.Is(err, errDenyWrite) {
				return fmt.Errorf("console: %w", errors.Join(errs...))
			}
		}
		c.log.Error().Err(errors.Join(errs...)).Msg("revocations at start")
	}
	if c.cfg.OnRevoke != nil {
		for _, e := range list {
			c.cfg.OnRevoke(e.Device, true)
		}
	}
	return nil
}

// errDenyWrite marks a failed bucket-policy write.
var errDenyWrite = errors.New("the bucket policy was not written")

// publishRevocations gives list to every configured component: the file, the
// in-process list, the signed list on the broker, the bucket policy. It returns what
// failed.
func (c *Console) publishRevocations(ctx context.Context, list []identity.Revocation) []error {
	var errs []error
	c.revoked.SetList(list)
	if f := c.cfg.RevocationsFile; f != "" {
		if err := writeRevocationsFile(f, list, c.cfg.Now()); err != nil {
			errs = append(errs, fmt.Errorf("the revocation file was not written: %w", err))
		}
	}
	if c.cfg.Revocations != nil {
		c.cfg.Revocations.SetList(list)
	}
	if c.revPub != nil {
		if err := c.revPub.publish(ctx, list); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.syncDeny(ctx, list); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// syncDeny brings the bucket policy's Deny entries in line with list.
func (c *Console) syncDeny(ctx context.Context, list []identity.Revocation) error {
	if c.deny == nil {
		return nil
	}
	res, err := c.deny.Sync(ctx, list)
	if err != nil {
		c.denyErrors.Add(1)
		c.log.Error().Err(err).Int("revokedDevices", len(list)).Msg("bucket policy: revocations not written")
		return fmt.Errorf("%w: %w", errDenyWrite, err)
	}
	if res.Written {
		c.log.Info().Int("denied", res.Devices).Int("statements", res.Statements).Int("bytes", res.Size).
			Bool("merged", res.Merged).Msg("bucket policy: revocations written")
	}
	return nil
}

// denyLoop syncs the bucket policy every DenySync: entries whose credentials have all
// expired are dropped, and a failed write is tried again.
func (c *Console) denyLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.DenySync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.revMu.Lock()
		list, err := c.store.Revocations(ctx)
		if err == nil {
			err = c.syncDeny(ctx, list)
		}
		c.revMu.Unlock()
		if err != nil && ctx.Err() == nil {
			c.log.Debug().Err(err).Msg("bucket policy sync")
		}
	}
}

// writeRevocationsFile replaces path with the list, atomically (internal/atomicfile: a
// synced temporary file renamed over path, which is what the watchers expect). The file
// is world-readable: device IDs are not secrets,
// and the broker and workers may run as other users.
func writeRevocationsFile(path string, list []identity.Revocation, now time.Time) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# clipgate revoked devices, one ID and its revocation time a line. Written by the console at %s;\n", now.UTC().Format(time.RFC3339))
	b.WriteString("# change it with the console (IDs added here by hand are taken in at its next start).\n")
	identity.FormatRevocations(&b, list)
	return atomicfile.Write(path, b.Bytes(), 0o644)
}

// readRevocationIDs reads a revocation file in identity's format (identity.ParseRevocations)
// and returns its entries sorted by ID, one per device.
func readRevocationIDs(path string) ([]identity.Revocation, error) {
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
	data, err := io.ReadAll(io.LimitReader(f, maxRevocationsFile+1))
	if err != nil {
		return nil, fmt.Errorf("revocation file %s: %w", path, err)
	}
	list, err := identity.ParseRevocations(path, data)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(list, func(a, b identity.Revocation) int { return strings.Compare(a.Device, b.Device) })
	return slices.CompactFunc(list, func(a, b identity.Revocation) bool { return a.Device == b.Device }), nil
}
