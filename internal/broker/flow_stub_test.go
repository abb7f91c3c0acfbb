package broker

// flowHeld is a stub until the broker holds requests (flow.go): before the fix nothing is held.
func (b *Broker) flowHeld() int64 { return 0 }
