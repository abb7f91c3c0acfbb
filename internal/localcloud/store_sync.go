package localcloud

import "sync"

// groupSync makes directory changes durable with one fsync of the directory for every
// batch of callers (group commit). A caller completes its changes to the directory (a
// rename, a remove), then calls sync, which returns once an fsync of the directory that
// began after the call has finished, with that fsync's result.
//
// Batches: the first caller to find no open batch opens one and is its leader; callers
// arriving while the batch is open join it. The leader waits for the fsync before it (at
// most one runs at a time), closes its batch to newcomers, fsyncs and wakes the batch. So
// while one fsync runs, every caller arriving meanwhile is covered by the next single
// fsync; a caller alone (no concurrency) pays exactly one fsync, as without batching.
//
// Why a joiner is covered: it joins only while its batch is open, and the leader closes
// the batch before its fsync starts, so the joiner's changes, complete before it called
// sync, precede the fsync.
type groupSync struct {
	dir string

	running sync.Mutex // held by the leader whose fsync runs

	mu    sync.Mutex
	open  *syncBatch             // the batch that callers join; nil when none is open
	fsync func(dir string) error // syncDir; tests replace it (setFsync) to observe or fail fsyncs
}

// syncBatch is the callers covered by one fsync.
type syncBatch struct {
	size int           // callers in the batch; guarded by groupSync.mu while open
	done chan struct{} // closed once err is set
	err  error
}

func newGroupSync(dir string) *groupSync { return &groupSync{dir: dir, fsync: syncDir} }

// sync returns once the directory's entries as they were when sync was called are
// durable, or the error of the fsync meant to make them so.
func (g *groupSync) sync() error {
	g.mu.Lock()
	bt := g.open
	leader := bt == nil
	if leader {
		bt = &syncBatch{done: make(chan struct{})}
		g.open = bt
	}
	bt.size++
	g.mu.Unlock()
	if !leader {
		<-bt.done
		return bt.err
	}
	g.running.Lock()
	g.mu.Lock()
	g.open = nil // later callers need a later fsync
	fsync := g.fsync
	g.mu.Unlock()
	bt.err = fsync(g.dir)
	g.running.Unlock()
	close(bt.done)
	return bt.err
}
