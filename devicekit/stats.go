package devicekit

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// KitStats are a Kit's counters and gauges, for monitoring. (They carry no Prometheus
// types; clipgate's own commands export them as Prometheus metrics.)
type KitStats struct {
	// CredentialRefreshes counts credentials received from the token worker and accepted.
	CredentialRefreshes int64
	// OutboxDepth is the number of upload events waiting in the outbox for the broker's
	// acknowledgement, counted now in StateDir.
	OutboxDepth int
	// Connected reports whether the kit is connected to the broker now.
	Connected bool
}

// Stats returns the kit's counters. OutboxDepth is -1 when the outbox cannot be read.
func (k *Kit) Stats() KitStats {
	k.mu.Lock()
	client := k.client
	k.mu.Unlock()
	s := KitStats{CredentialRefreshes: k.refreshes.Load(), OutboxDepth: -1, Connected: client != nil && client.Connected()}
	entries, err := os.ReadDir(filepath.Join(k.cfg.StateDir, outboxDir))
	if err == nil {
		s.OutboxDepth = 0
		for _, e := range entries {
			// What flush publishes: regular *.json files, not hidden temporary ones.
			if name := e.Name(); e.Type().IsRegular() && strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, ".") {
				s.OutboxDepth++
			}
		}
	}
	return s
}

// SpoolStats are a Spool's counters and gauges, for monitoring.
type SpoolStats struct {
	// Uploaded counts clips uploaded and announced, UploadedBytes their sizes.
	Uploaded, UploadedBytes int64
	// Dropped counts clips the bounds dropped, Rejected those that cannot be uploaded.
	Dropped, Rejected int64
	// Backlog and BacklogBytes are the clips in Dir waiting to be uploaded (regular files
	// that are not temporary names), counted now. They are -1 when Dir cannot be read.
	Backlog int
	// BacklogBytes is the size of the backlog.
	BacklogBytes int64
}

// spoolCounters count a Spool's outcomes (see emit).
type spoolCounters struct {
	uploaded, uploadedBytes, dropped, rejected atomic.Int64
}

func (c *spoolCounters) count(e SpoolEvent) {
	switch e.Kind {
	case SpoolUploaded:
		c.uploaded.Add(1)
		c.uploadedBytes.Add(e.Size)
	case SpoolDropped:
		c.dropped.Add(1)
	case SpoolRejected:
		c.rejected.Add(1)
	}
}

// Stats returns the spool's counters. It is safe to call while Run runs.
func (s *Spool) Stats() SpoolStats {
	st := SpoolStats{
		Uploaded: s.ctr.uploaded.Load(), UploadedBytes: s.ctr.uploadedBytes.Load(),
		Dropped: s.ctr.dropped.Load(), Rejected: s.ctr.rejected.Load(),
		Backlog: -1, BacklogBytes: -1,
	}
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return st
	}
	st.Backlog, st.BacklogBytes = 0, 0
	for _, e := range entries {
		if !e.Type().IsRegular() || tempName(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		st.Backlog++
		st.BacklogBytes += fi.Size()
	}
	return st
}
