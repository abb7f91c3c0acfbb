package devicekit

// SetSpoolIdleHook calls fn whenever the spool looked for a clip to upload and found none
// it may start (none ready, or their classes' windows closed). Set it before Run.
func SetSpoolIdleHook(s *Spool, fn func()) { s.onIdle = fn }
