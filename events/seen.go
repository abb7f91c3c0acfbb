package events

import (
	"container/list"
	"sync"
	"time"
)

// seenSet is a bounded set of recently handled event keys: least recently added keys
// are evicted beyond max entries, and keys older than ttl are forgotten.
type seenSet struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[string]*list.Element // values: *seenEntry
	l  list.List                // front = newest
}

type seenEntry struct {
	key string
	at  time.Time
}

func newSeenSet(max int, ttl time.Duration, now func() time.Time) *seenSet {
	s := &seenSet{max: max, ttl: ttl, now: now, m: make(map[string]*list.Element, min(max, 1024))}
	s.l.Init()
	return s
}

// has reports whether key was added less than ttl ago and not evicted since.
func (s *seenSet) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return false
	}
	if s.now().Sub(e.Value.(*seenEntry).at) >= s.ttl {
		s.l.Remove(e)
		delete(s.m, key)
		return false
	}
	return true
}

// add records key as seen now.
func (s *seenSet) add(key string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		e.Value.(*seenEntry).at = now
		s.l.MoveToFront(e)
		return
	}
	s.m[key] = s.l.PushFront(&seenEntry{key: key, at: now})
	// Evict beyond the bound, and expired entries at the old end while at it.
	for s.l.Len() > 0 {
		last := s.l.Back()
		if s.l.Len() <= s.max && now.Sub(last.Value.(*seenEntry).at) < s.ttl {
			break
		}
		s.l.Remove(last)
		delete(s.m, last.Value.(*seenEntry).key)
	}
}

// len returns the number of entries (expired ones included until evicted).
func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.l.Len()
}

// dedupKey identifies an event: its device and its ID. Device IDs never contain '/', so
// the key is unambiguous.
func dedupKey(device, id string) string { return device + "/" + id }

// inProgress tracks the events being processed, so that a copy that arrives meanwhile
// (a redelivery after a session resume) waits for the first instead of running the
// handler beside it.
type inProgress struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// acquire claims key, returning the channel to pass to release. If another worker
// holds the key, acquire waits for it to finish (or for done to close, then ok is false)
// and tries again.
func (p *inProgress) acquire(key string, done <-chan struct{}) (held chan struct{}, ok bool) {
	for {
		p.mu.Lock()
		if p.m == nil {
			p.m = make(map[string]chan struct{})
		}
		ch, busy := p.m[key]
		if !busy {
			ch = make(chan struct{})
			p.m[key] = ch
			p.mu.Unlock()
			return ch, true
		}
		p.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return nil, false
		}
	}
}

// release gives up key, waking the workers waiting for it.
func (p *inProgress) release(key string, held chan struct{}) {
	p.mu.Lock()
	delete(p.m, key)
	p.mu.Unlock()
	close(held)
}
