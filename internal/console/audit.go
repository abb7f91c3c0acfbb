package console

import (
	"context"
	"net/http"
)

// record appends an entry to the audit log (at the console's time). A failure is logged
// and counted (Stats.AuditErrors), not returned: the action it records has happened.
func (c *Console) record(ctx context.Context, a AuditEntry) {
	if a.At.IsZero() {
		a.At = c.cfg.Now()
	}
	if err := c.store.AddAudit(context.WithoutCancel(ctx), a); err != nil {
		c.auditErrors.Add(1)
		c.log.Error().Err(err).Str("action", a.Action).Str("actor", a.Actor).Str("target", a.Target).Msg("writing the audit log")
	}
}

// audit records an action of the request's principal.
func (c *Console) audit(r *http.Request, action, target, detail string) {
	a := AuditEntry{Action: action, Target: target, Detail: detail, Client: clientAddr(r)}
	if p := principalFrom(r.Context()); p != nil {
		a.Actor, a.Role, a.Via = p.Name, p.Role, p.via()
	}
	c.record(r.Context(), a)
}
