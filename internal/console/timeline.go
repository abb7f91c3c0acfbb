package console

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/clipgate/clipgate/internal/deviceid"
)

// Timeline steps and their default spans.
const (
	StepHour = "hour"
	StepDay  = "day"
	// DefaultHours and DefaultDays are the spans of a timeline without from and to.
	DefaultHours = 48
	DefaultDays  = 30
	// MaxTimelineSlots bounds the slots of one timeline.
	MaxTimelineSlots = 1000
)

// Timeline is a device's (or the fleet's) clips per hour or per day, with the gaps: runs
// of slots without a clip where clips were expected (after an earlier clip).
type Timeline struct {
	// Device is the device; empty for the whole fleet.
	Device string `json:"device,omitempty"`
	// Step is "hour" or "day"; From and To bound the timeline (UTC, whole steps).
	Step string    `json:"step"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Slots holds every slot of [From, To), empty ones included, oldest first.
	Slots []TimelineSlot `json:"slots"`
	// Gaps are the runs of empty slots that follow a clip (in the timeline or before
	// it), oldest first; the slot in progress is never one.
	Gaps []Gap `json:"gaps"`
	// Clips, Bytes and RecordedMS add up the slots.
	Clips      int64 `json:"clips"`
	Bytes      int64 `json:"bytes"`
	RecordedMS int64 `json:"recordedMs"`
}

// Gap is a run of slots without clips: [From, To).
type Gap struct {
	From  time.Time `json:"from"`
	To    time.Time `json:"to"`
	Slots int       `json:"slots"`
}

// timelineQuery reads a timeline's parameters: device (optional), step, from, to.
func timelineQuery(q url.Values) (device, step string, from, to time.Time, err error) {
	if device = q.Get("device"); device != "" {
		if err := deviceid.Validate(device); err != nil {
			return "", "", time.Time{}, time.Time{}, invalidf("device: %v", err)
		}
	}
	step = q.Get("step")
	if step == "" {
		step = StepHour
	}
	if step != StepHour && step != StepDay {
		return "", "", time.Time{}, time.Time{}, invalidf("step %q: want hour or day", truncate(step, 20))
	}
	if from, err = parseTime("from", q.Get("from")); err != nil {
		return
	}
	if to, err = parseTime("to", q.Get("to")); err != nil {
		return
	}
	return device, step, from, to, nil
}

// stepDuration is a step's length.
func stepDuration(step string) time.Duration {
	if step == StepDay {
		return 24 * time.Hour
	}
	return time.Hour
}

// Timeline returns the timeline of a device ("" for the fleet) by step (StepHour or
// StepDay) over [from, to), each rounded out to whole steps (UTC); zero bounds mean the
// DefaultHours or DefaultDays up to the end of the current step.
func (c *Console) Timeline(ctx context.Context, device, step string, from, to time.Time) (*Timeline, error) {
	d := stepDuration(step)
	now := c.cfg.Now().UTC()
	if to.IsZero() {
		to = now
	}
	// To is exclusive: one inside a slot takes the whole slot.
	to = to.UTC()
	if whole := to.Truncate(d); !whole.Equal(to) {
		to = whole.Add(d)
	}
	if from.IsZero() {
		n := DefaultHours
		if step == StepDay {
			n = DefaultDays
		}
		from = to.Add(-time.Duration(n) * d)
	}
	from = from.UTC().Truncate(d)
	if !from.Before(to) {
		return nil, invalidf("from must be before to")
	}
	if n := to.Sub(from) / d; n > MaxTimelineSlots {
		return nil, invalidf("the timeline would have %d slots; at most %d (narrow from and to, or use step=day)", n, MaxTimelineSlots)
	}
	got, err := c.store.Timeline(ctx, device, from, to, d)
	if err != nil {
		return nil, err
	}
	t := &Timeline{Device: device, Step: step, From: from, To: to, Slots: make([]TimelineSlot, 0, to.Sub(from)/d), Gaps: []Gap{}}
	i := 0
	for at := from; at.Before(to); at = at.Add(d) {
		s := TimelineSlot{Start: at}
		if i < len(got) && got[i].Start.Equal(at) {
			s = got[i]
			i++
		}
		t.Slots = append(t.Slots, s)
		t.Clips += s.Clips
		t.Bytes += s.Bytes
		t.RecordedMS += s.RecordedMS
	}
	// Empty slots count as a gap once a clip came before them: in the timeline, or
	// before it.
	before, err := c.store.Clips(ctx, ClipQuery{Device: device, To: from, Limit: 1})
	if err != nil {
		return nil, err
	}
	expecting := len(before) > 0
	var open *Gap
	for _, s := range t.Slots {
		switch {
		case s.Clips > 0:
			expecting, open = true, nil
		case !expecting || s.Start.Add(d).After(now):
			open = nil // nothing expected yet, or the slot is not over
		case open != nil:
			open.To, open.Slots = s.Start.Add(d), open.Slots+1
		default:
			t.Gaps = append(t.Gaps, Gap{From: s.Start, To: s.Start.Add(d), Slots: 1})
			open = &t.Gaps[len(t.Gaps)-1]
		}
	}
	return t, nil
}

// chart is a timeline drawn as an SVG bar chart: what the "timeline" template needs.
type chart struct {
	*Timeline
	Title         string
	Width, Height int
	Bars          []bar
	// Labels are the times under the chart: start, middle, end.
	Labels []string
	Link   string // the clip list to filter, e.g. /devices/cam-01
}

type bar struct {
	X, Y, W, H int
	Class      string // "bar" (clips), "gap" (an empty slot in a gap) or "empty"
	Title      string // the tooltip
	Href       string // the slot's clips
}

const (
	chartSlotWidth = 10
	chartHeight    = 100
)

// newChart lays out a timeline's bars (viewBox units: chartSlotWidth per slot,
// chartHeight high; the page stretches it to its width).
func newChart(t *Timeline, title, link string) chart {
	ch := chart{Timeline: t, Title: title, Width: len(t.Slots) * chartSlotWidth, Height: chartHeight, Link: link}
	var most int64
	for _, s := range t.Slots {
		most = max(most, s.Clips)
	}
	d := stepDuration(t.Step)
	inGap := func(at time.Time) bool {
		for _, g := range t.Gaps {
			if !at.Before(g.From) && at.Before(g.To) {
				return true
			}
		}
		return false
	}
	layout := "Jan 2 15:04"
	if t.Step == StepDay {
		layout = "Jan 2"
	}
	for i, s := range t.Slots {
		b := bar{X: i*chartSlotWidth + 1, W: chartSlotWidth - 2}
		v := url.Values{"from": {inputTime(s.Start)}, "to": {inputTime(s.Start.Add(d))}}
		b.Href = link + "?" + v.Encode()
		when := s.Start.Format(layout)
		switch {
		case s.Clips > 0:
			b.H, b.Class = max(int(s.Clips*(chartHeight-4)/most), 4), "bar"
			b.Title = fmt.Sprintf("%s: %d clips, %s", when, s.Clips, formatSize(s.Bytes))
			if s.RecordedMS > 0 {
				b.Title += ", " + formatDuration(time.Duration(s.RecordedMS)*time.Millisecond) + " recorded"
			}
		case inGap(s.Start):
			b.H, b.Class = chartHeight, "gap"
			b.Title = when + ": no clips (gap)"
		default:
			b.H, b.Class = 2, "empty"
			b.Title = when + ": no clips"
		}
		b.Y = chartHeight - b.H
		ch.Bars = append(ch.Bars, b)
	}
	if n := len(t.Slots); n > 0 {
		ch.Labels = []string{t.From.Format(layout), t.Slots[n/2].Start.Format(layout), t.To.Format(layout)}
	}
	return ch
}

// formatDuration writes a clip's length: "42.5 s", "3 min 20 s", "1 h 02 min".
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	case d < time.Hour:
		return fmt.Sprintf("%d min %02d s", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%d h %02d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
}
