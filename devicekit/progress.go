package devicekit

import (
	"sync"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// progress adds up the bytes of one upload that are out and reports them to
// Clip.Progress: those of finished requests, plus what the SDK's progress listener says
// of each request in flight (one PutObject, or up to uploadRoutines parts). A nil
// *progress (no Clip.Progress) does nothing.
type progress struct {
	fn    func(sent, total int64)
	total int64

	mu       sync.Mutex // serialises the calls of fn too
	finished int64
	flight   map[int]int64 // bytes read out by each request in flight, by part number (0: PutObject)
}

func newProgress(fn func(sent, total int64), total int64) *progress {
	if fn == nil {
		return nil
	}
	return &progress{fn: fn, total: total, flight: make(map[int]int64)}
}

// report calls fn with the current sum; the caller holds p.mu.
func (p *progress) report() {
	sent := p.finished
	for _, n := range p.flight {
		sent += n
	}
	p.fn(min(sent, p.total), p.total)
}

// resumed sets the bytes stored before this call of Upload (the parts of a checkpoint).
func (p *progress) resumed(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished = n
	clear(p.flight)
	p.report()
}

// set records that request part has n bytes out.
func (p *progress) set(part int, n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flight[part] = n
	p.report()
}

// done records that request part stored its size bytes.
func (p *progress) done(part int, size int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.flight, part)
	p.finished += size
	p.report()
}

// failed records that request part failed: its bytes are to be sent again.
func (p *progress) failed(part int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.flight[part]; ok {
		delete(p.flight, part)
		p.report()
	}
}

// stored reports the whole clip stored: Upload's last call.
func (p *progress) stored() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished = p.total
	clear(p.flight)
	p.report()
}

// with returns opts with the SDK progress listener of request part, if there is a
// Clip.Progress. (The SDK cannot take a nil listener.)
func (p *progress) with(part int, opts ...oss.Option) []oss.Option {
	if p == nil {
		return opts
	}
	return append(opts, oss.Progress(partListener{p, part}))
}

type partListener struct {
	p    *progress
	part int
}

// ProgressChanged follows the bytes the SDK reads out of the file into the request body.
// The outcome of the request (a 2xx or an error) is for the caller to report: the SDK
// says "completed" for any answer.
func (l partListener) ProgressChanged(ev *oss.ProgressEvent) {
	switch ev.EventType {
	case oss.TransferStartedEvent:
		l.p.set(l.part, 0)
	case oss.TransferDataEvent:
		l.p.set(l.part, ev.ConsumedBytes)
	}
}
