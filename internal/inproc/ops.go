package inproc

import (
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/localcloud"
)

// Broker returns the stack's broker (for its metrics and readiness).
func (s *Stack) Broker() *broker.Broker { return s.broker }

// Cloud returns the stack's local cloud (for its metrics).
func (s *Stack) Cloud() *localcloud.Server { return s.cloud }
