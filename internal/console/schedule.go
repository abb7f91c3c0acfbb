package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// SchedulerActor is the audit log's actor of scheduled retention runs.
const SchedulerActor = "scheduler"

// RuleRun is the outcome of one retention rule's run.
type RuleRun struct {
	Prefix string          `json:"prefix"`
	Days   int             `json:"days"`
	Result RetentionResult `json:"result"`
	Error  string          `json:"error,omitempty"`
}

// RunRetentionRules applies every retention rule now, records each run in the rule and
// in the audit log (as actor, with role, via and client), and returns the outcomes. A
// rule that fails does not stop the others.
func (c *Console) RunRetentionRules(ctx context.Context, actor AuditEntry) ([]RuleRun, error) {
	rules, err := c.store.RetentionRules(ctx)
	if err != nil {
		return nil, err
	}
	runs := make([]RuleRun, 0, len(rules))
	for _, rule := range rules {
		res, err := c.Retention(ctx, rule.Prefix, rule.Days)
		run := RuleRun{Prefix: rule.Prefix, Days: rule.Days, Result: res}
		if err != nil {
			run.Error = err.Error()
			c.log.Error().Err(err).Str("prefix", rule.Prefix).Msg("retention rule run failed")
		}
		if err := c.store.RecordRetentionRun(context.WithoutCancel(ctx), rule.Prefix, c.cfg.Now(), res.Objects, run.Error); err != nil {
			c.log.Error().Err(err).Str("prefix", rule.Prefix).Msg("recording a retention run")
		}
		a := actor
		a.Action, a.Target, a.Detail = AuditRetentionRun, rule.Prefix, retentionDetail(rule.Days, res, err)
		c.record(ctx, a)
		runs = append(runs, run)
		if ctx.Err() != nil {
			return runs, ctx.Err()
		}
	}
	return runs, nil
}

// retentionLoop runs the retention rules every RetentionEvery.
func (c *Console) retentionLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.RetentionEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		runs, err := c.RunRetentionRules(ctx, AuditEntry{Actor: SchedulerActor})
		if err != nil && ctx.Err() == nil {
			c.log.Error().Err(err).Msg("scheduled retention")
		}
		c.retentionRuns.Add(1)
		if len(runs) > 0 {
			c.log.Info().Int("rules", len(runs)).Msg("scheduled retention run")
		}
	}
}

// lifecycleIDPrefix marks the bucket lifecycle rules the console makes from its
// retention rules; rules with other IDs are someone else's and are kept.
const lifecycleIDPrefix = "clipgate-retention-"

// lifecycleID is the ID of a retention rule's lifecycle rule (a rule ID is at most 255
// bytes; a prefix may be longer, so it is hashed).
func lifecycleID(prefix string) string {
	sum := sha256.Sum256([]byte(prefix))
	return lifecycleIDPrefix + hex.EncodeToString(sum[:8])
}

// SyncLifecycle makes the bucket's lifecycle rules match the retention rules: one
// Expiration rule per retention rule (ID lifecycleIDPrefix + a hash of the prefix),
// beside the bucket's other rules, which it keeps. Overlapping prefixes are allowed
// (x-oss-allow-same-action-overlap): OSS then applies the shortest expiry. It returns
// the number of the console's rules on the bucket.
// https://www.alibabacloud.com/help/en/oss/developer-reference/putbucketlifecycle
func (c *Console) SyncLifecycle(ctx context.Context) (int, error) {
	rules, err := c.store.RetentionRules(ctx)
	if err != nil {
		return 0, err
	}
	client, bucket := c.cfg.Bucket.Client, c.cfg.Bucket.BucketName
	cur, err := client.GetBucketLifecycle(bucket, oss.WithContext(ctx))
	var se oss.ServiceError
	if err != nil && !(errors.As(err, &se) && se.Code == "NoSuchLifecycle") {
		return 0, fmt.Errorf("%w: GetBucketLifecycle: %v", ErrOSS, err)
	}
	var keep []oss.LifecycleRule
	for _, r := range cur.Rules {
		if !strings.HasPrefix(r.ID, lifecycleIDPrefix) {
			keep = append(keep, r)
		}
	}
	for _, r := range rules {
		keep = append(keep, oss.LifecycleRule{ID: lifecycleID(r.Prefix), Prefix: r.Prefix, Status: "Enabled",
			Expiration: &oss.LifecycleExpiration{Days: r.Days}})
	}
	if len(keep) == 0 {
		if len(cur.Rules) == 0 {
			return 0, nil
		}
		if err := client.DeleteBucketLifecycle(bucket, oss.WithContext(ctx)); err != nil {
			return 0, fmt.Errorf("%w: DeleteBucketLifecycle: %v", ErrOSS, err)
		}
		return 0, nil
	}
	if err := client.SetBucketLifecycle(bucket, keep, oss.AllowSameActionOverLap(true), oss.WithContext(ctx)); err != nil {
		return 0, fmt.Errorf("%w: PutBucketLifecycle: %v", ErrOSS, err)
	}
	return len(rules), nil
}
