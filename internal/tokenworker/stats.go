package tokenworker

import (
	"sync/atomic"

	"github.com/clipgate/clipgate/internal/protocol"
)

// Stats are the worker's counters since New. Prometheus metrics will be built on them.
type Stats struct {
	Requests uint64 // messages handled (Handle calls and requests refused because the queue was full)
	Dropped  uint64 // requests that got no reply: not an auth-request topic, or no request ID
	OK       uint64 // replies with credentials
	Reused   uint64 // of OK, credentials served from the cache without an STS call
	STSCalls uint64 // AssumeRole calls made (successful or not)
	// Errors counts error replies by code.
	Errors map[protocol.Code]uint64
	// RevocationLists counts the signed revocation lists applied, RevocationListsRefused
	// those refused (Config.RevocationsKey).
	RevocationLists, RevocationListsRefused uint64
}

// codes is the closed set of reply error codes, in counter order.
var codes = [...]protocol.Code{
	protocol.CodeInvalid, protocol.CodeUnauthenticated, protocol.CodeDenied, protocol.CodeRevoked,
	protocol.CodeClockSkew, protocol.CodeReplay, protocol.CodeRateLimited, protocol.CodeBusy,
	protocol.CodeUnavailable, protocol.CodeInternal, protocol.CodeQuotaExceeded,
}

type counters struct {
	requests, dropped, ok, reused, stsCalls atomic.Uint64
	errors                                  [len(codes)]atomic.Uint64
	revocationLists, revocationListsRefused atomic.Uint64
}

func (c *counters) countError(code protocol.Code) {
	for i := range codes {
		if codes[i] == code {
			c.errors[i].Add(1)
			return
		}
	}
	// Not reachable: every reply code is one of codes. Count it as internal rather than lose it.
	c.errors[len(codes)-1].Add(1)
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Requests: c.requests.Load(),
		Dropped:  c.dropped.Load(),
		OK:       c.ok.Load(),
		Reused:   c.reused.Load(),
		STSCalls: c.stsCalls.Load(),
		Errors:   make(map[protocol.Code]uint64, len(codes)),

		RevocationLists:        c.revocationLists.Load(),
		RevocationListsRefused: c.revocationListsRefused.Load(),
	}
	for i, code := range codes {
		if n := c.errors[i].Load(); n > 0 {
			s.Errors[code] = n
		}
	}
	return s
}
