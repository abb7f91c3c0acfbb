package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/clipgate/clipgate/internal/bytesize"
	"github.com/clipgate/clipgate/internal/quota"
)

// MaxQuotaBytes bounds a quota (1 PiB a day or a month): larger values are refused as
// a mistake.
const MaxQuotaBytes = 1 << 50

// DefaultQuotaEvery is the default of Config.QuotaEvery.
const DefaultQuotaEvery = time.Minute

// quotaGap is the shortest time between two quota snapshots made because clips were
// indexed: a busy fleet makes one a second, not one a clip.
const quotaGap = time.Second

// checkQuota refuses negative and absurd quotas.
func checkQuota(q Quota) error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"dayBytes", q.DayBytes}, {"monthBytes", q.MonthBytes}} {
		if f.v < 0 || f.v > MaxQuotaBytes {
			return invalidf("%s %d: want 0 (no limit) to %d (1 PiB)", f.name, f.v, int64(MaxQuotaBytes))
		}
	}
	return nil
}

// SetQuota sets a device's upload quota (bytes per UTC day and per UTC month; 0: no
// limit), which the device must be known for (ErrNotFound otherwise), and publishes the
// quota snapshot at once. If the quota is recorded but the snapshot could not be
// published, the error says so; the snapshot goes out again at the next connection and
// every Config.QuotaEvery.
func (c *Console) SetQuota(ctx context.Context, id string, q Quota) error {
	if err := validateDevice(id); err != nil {
		return err
	}
	if err := checkQuota(q); err != nil {
		return err
	}
	if err := c.store.SetQuota(ctx, id, q); err != nil {
		return err
	}
	c.log.Info().Str("device", id).Int64("dayBytes", q.DayBytes).Int64("monthBytes", q.MonthBytes).Msg("quota set")
	if err := c.publishQuotas(ctx); err != nil {
		return fmt.Errorf("console: the quota is recorded, but %w", err)
	}
	return nil
}

// QuotaInfo is a device's quota, its usage and what the token workers make of it.
type QuotaInfo struct {
	QuotaUsage
	// DayResets and MonthResets are when the day's and the month's usage restart (UTC).
	DayResets   time.Time `json:"dayResets"`
	MonthResets time.Time `json:"monthResets"`
	// OverUntil is set when the device has used a quota: the token workers refuse it
	// write and append credentials until then.
	OverUntil time.Time `json:"overUntil,omitzero"`
	// Enforced reports that the console publishes the quotas to the token workers (it
	// has a signing key, Config.RevocationKey); without it they are recorded only.
	Enforced bool `json:"enforced"`
}

// DeviceQuota returns a known device's quota and usage now.
func (c *Console) DeviceQuota(ctx context.Context, id string) (*QuotaInfo, error) {
	if err := validateDevice(id); err != nil {
		return nil, err
	}
	now := c.cfg.Now().UTC()
	day, month := quota.DayStart(now), quota.MonthStart(now)
	u, err := c.store.DeviceQuotaUsage(ctx, id, day, month)
	if err != nil {
		return nil, err
	}
	e := quotaEntry(u)
	return &QuotaInfo{QuotaUsage: *u, DayResets: day.AddDate(0, 0, 1), MonthResets: month.AddDate(0, 1, 0),
		OverUntil: e.Over(day, now), Enforced: c.signedPub != nil}, nil
}

func quotaEntry(u *QuotaUsage) quota.Entry {
	return quota.Entry{Device: u.Device, DayLimit: u.DayBytes, MonthLimit: u.MonthBytes, DayUsed: u.DayUsed, MonthUsed: u.MonthUsed}
}

// publishQuotas makes the quota snapshot of now (every device with a quota, its usage of
// the UTC day and month) and publishes it, signed, on the quota topic. Snapshots are
// made one at a time, so that each is issued after the usage it holds was read.
func (c *Console) publishQuotas(ctx context.Context) error {
	if c.signedPub == nil {
		return nil
	}
	c.quotaMu.Lock()
	defer c.quotaMu.Unlock()
	now := c.cfg.Now().UTC()
	day, month := quota.DayStart(now), quota.MonthStart(now)
	usage, err := c.store.QuotaUsage(ctx, day, month)
	if err != nil {
		return fmt.Errorf("the quota snapshot was not made: %w", err)
	}
	snap := &quota.Snapshot{Day: day, Entries: make([]quota.Entry, len(usage))}
	devices := make(map[string]bool, len(usage))
	for i := range usage {
		snap.Entries[i] = quotaEntry(&usage[i])
		devices[usage[i].Device] = true
	}
	c.quotaDevices.Store(&devices)
	sign := func(issued time.Time) ([]byte, error) {
		snap.Issued = issued
		return quota.Sign(c.cfg.RevocationKey, snap)
	}
	if err := c.signedPub.publish(ctx, c.cfg.Topics.Quotas(), "quota snapshot", sign); err != nil {
		return err
	}
	c.quotaSnapshots.Add(1)
	return nil
}

// indexedFor asks for a new quota snapshot when device, which has a quota, got a clip
// indexed.
func (c *Console) indexedFor(device string) {
	if m := c.quotaDevices.Load(); m != nil && (*m)[device] {
		select {
		case c.quotaDirty <- struct{}{}:
		default: // one is asked for already
		}
	}
}

// quotaLoop publishes the quota snapshot every Config.QuotaEvery, and after clips of
// devices with quotas were indexed (at most one per quotaGap).
func (c *Console) quotaLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.QuotaEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.quotaDirty:
		}
		if err := c.publishQuotas(ctx); err != nil && ctx.Err() == nil {
			c.log.Error().Err(err).Msg("quota snapshot")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(quotaGap):
		}
	}
}

// setQuotaBy sets a quota for the request's principal and records it in the audit log.
func (c *Console) setQuotaBy(r *http.Request, id string, q Quota) (*QuotaInfo, error) {
	err := c.SetQuota(r.Context(), id, q)
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) {
		return nil, err
	}
	c.audit(r, AuditQuota, id, fmt.Sprintf("per day %s, per month %s", quotaText(q.DayBytes), quotaText(q.MonthBytes)))
	if err != nil {
		return nil, err
	}
	return c.DeviceQuota(r.Context(), id)
}

// quotaText is a limit for people: "none" or "10 MiB (10485760 bytes)".
func quotaText(n int64) string {
	if n == 0 {
		return "none"
	}
	return fmt.Sprintf("%s (%d bytes)", humanize.IBytes(uint64(n)), n)
}

// apiDeviceQuota: GET a device's quota and usage.
func (c *Console) apiDeviceQuota(w http.ResponseWriter, r *http.Request) {
	info, err := c.DeviceQuota(r.Context(), r.PathValue("id"))
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// apiPutDeviceQuota: PUT {"dayBytes": N, "monthBytes": N} (both required; 0: no limit).
func (c *Console) apiPutDeviceQuota(w http.ResponseWriter, r *http.Request) {
	var body struct {
		DayBytes   *int64 `json:"dayBytes"`
		MonthBytes *int64 `json:"monthBytes"`
	}
	if !decodeJSON(w, r, &body) {
		return
	}
	if body.DayBytes == nil || body.MonthBytes == nil {
		c.apiError(w, invalidf("dayBytes and monthBytes are required (0: no limit)"))
		return
	}
	info, err := c.setQuotaBy(r, r.PathValue("id"), Quota{DayBytes: *body.DayBytes, MonthBytes: *body.MonthBytes})
	if err != nil {
		c.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// formQuota reads a size field of the quota form: empty or 0 is no limit; sizes take
// units ("500 MB", "2 GiB").
func formQuota(r *http.Request, field, name string) (int64, error) {
	v := strings.TrimSpace(r.PostFormValue(field))
	if v == "" {
		return 0, nil
	}
	n, err := bytesize.Parse(v)
	if err != nil {
		return 0, invalidf("%s: %v", name, err)
	}
	if n > MaxQuotaBytes {
		return 0, invalidf("%s: %s is more than 1 PiB", name, truncate(v, 40))
	}
	return int64(n), nil
}

// quotaForm is the device page's quota form.
func (c *Console) quotaForm(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	day, err := formQuota(r, "day", "per day")
	if err == nil {
		var month int64
		if month, err = formQuota(r, "month", "per month"); err == nil {
			_, err = c.setQuotaBy(r, id, Quota{DayBytes: day, MonthBytes: month})
		}
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	http.Redirect(w, r, "/devices/"+url.PathEscape(id)+"?done=quota", http.StatusSeeOther)
}
