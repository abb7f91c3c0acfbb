package cli

// Ops is the flag of a long-running command's operations endpoint (package internal/ops:
// Prometheus metrics on /metrics, /healthz and /readyz). The command's grammar embeds it,
// so that every command spells it the same way.
type Ops struct {
	MetricsAddr string `name:"metrics-addr" placeholder:"HOST:PORT" help:"Serve Prometheus metrics on /metrics, liveness on /healthz and readiness on /readyz at this address, e.g. 127.0.0.1:9641; empty: off."`
}
