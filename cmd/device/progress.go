package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
)

// results writes the result lines of upload; on a terminal, a status line under them
// follows the file being uploaded, from devicekit's Clip.Progress:
//
//	[2/5] front-door.mp4  12 MiB / 24 MiB  50%  3.1 MiB/s  4s left
//
// The rate counts the bytes sent by this run only (not those a resumed upload had already
// stored) over the time since the file started.
type results struct {
	w     io.Writer
	live  bool             // draw the status line (stdout is a terminal)
	now   func() time.Time // clock of the rate; time.Now
	every time.Duration    // least time between two draws of the status line
	hook  func(sent, total int64)

	mu      sync.Mutex
	file    int       // number of the current file, counted from 1; 0 between files
	label   string    // "[i/n] name"
	began   time.Time // first report of the current file
	base    int64     // bytes already stored when the file started (its first report)
	started bool      // base is known
	sent    int64
	total   int64
	drawn   time.Time // last draw
	shown   bool      // the status line is on screen
}

// drawEvery is how often the status line is redrawn at most.
const drawEvery = 100 * time.Millisecond

// clearLine blanks the terminal line and returns to its start (ANSI erase in line).
const clearLine = "\x1b[2K\r"

func (m *Main) newResults() *results {
	r := &results{w: m.Stdout, live: m.IsTerminal(m.Stdout), now: time.Now, every: drawEvery, hook: m.onProgress}
	if m.drawAll {
		r.every = 0
	}
	return r
}

// start begins file i of n (from 0) and returns the Clip.Progress callback of its upload
// (nil when no status line is drawn).
func (r *results) start(i, n int, name string, size int64) func(sent, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.file, r.label = i+1, fmt.Sprintf("[%d/%d] %s", i+1, n, name)
	r.began, r.started, r.base, r.sent, r.total = r.now(), false, 0, 0, size
	if !r.live {
		return nil
	}
	r.draw()
	file := r.file
	return func(sent, total int64) { r.progress(file, sent, total) }
}

// progress records a report of file and redraws the status line, at most every r.every
// (the first report and the last one always).
func (r *results) progress(file int, sent, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if file != r.file { // a late report of a file that is over
		return
	}
	if !r.started {
		r.base, r.started = sent, true
		r.began = r.now()
	}
	r.sent, r.total = sent, total
	if now := r.now(); now.Sub(r.drawn) >= r.every || sent == total {
		r.draw()
	}
	if r.hook != nil {
		r.hook(sent, total)
	}
}

// status is the text of the status line.
func (r *results) status() string {
	var b strings.Builder
	b.WriteString(r.label)
	if r.total <= 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "  %s / %s  %d%%", humanize.IBytes(uint64(max(r.sent, 0))), humanize.IBytes(uint64(r.total)), r.sent*100/r.total)
	elapsed := r.now().Sub(r.began)
	done := r.sent - r.base
	if !r.started || elapsed < time.Second/2 || done <= 0 {
		return b.String() // too early for a rate
	}
	rate := float64(done) / elapsed.Seconds()
	fmt.Fprintf(&b, "  %s/s", humanize.IBytes(uint64(rate)))
	if left := r.total - r.sent; left > 0 {
		fmt.Fprintf(&b, "  %s left", (time.Duration(float64(left) / rate * float64(time.Second))).Round(time.Second))
	}
	return b.String()
}

// draw shows the status line; the caller holds r.mu.
func (r *results) draw() {
	fmt.Fprint(r.w, clearLine+r.status())
	r.drawn, r.shown = r.now(), true
}

// line prints a result line, ending the current file.
func (r *results) line(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.file = 0
	if r.shown {
		fmt.Fprint(r.w, clearLine)
		r.shown = false
	}
	fmt.Fprintln(r.w, s)
}

// finish clears the status line, if any.
func (r *results) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shown {
		fmt.Fprint(r.w, clearLine)
		r.shown = false
	}
}
