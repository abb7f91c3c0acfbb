// Package soak runs clipgate under load with faults injected at random. Its cluster is
// internal/inproc's stack, Restartable: each part (broker, local cloud, token workers) can
// be stopped and started again in place while the rest keeps running.
package soak

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// DefaultWorkers is the number of token workers of a cluster when
// ClusterOptions.Workers is 0.
const DefaultWorkers = 2

// ClusterOptions configures a cluster.
type ClusterOptions struct {
	// Dir holds the local cloud's data, the broker's sessions (Dir/broker) and the
	// devices' state directories (devices/{id}). Required; the caller removes it.
	Dir string
	// Workers is the number of token workers started; 0 means DefaultWorkers.
	Workers int
	// Bucket and Prefix: default inproc.DefaultBucket and inproc.DefaultPrefix.
	Bucket, Prefix string
	// WorkerConfig, when set, adjusts each token worker's configuration before it starts
	// (e.g. to put a tap in front of OSS by changing OSS.Endpoint).
	WorkerConfig func(*tokenworker.Config)
	// BrokerConfig, when set, adjusts the broker's configuration at every start.
	BrokerConfig func(*broker.Config)
	// Logger receives every component's logs; the zero Logger discards them.
	Logger zerolog.Logger
}

// StartCluster starts a Restartable in-process stack whose broker keeps persistent
// sessions and queued messages in Dir/broker across its restarts, and has no HTTP
// endpoint. ctx bounds the start (the workers' first connection). On error nothing is
// left running.
func StartCluster(ctx context.Context, opts ClusterOptions) (*inproc.Stack, error) {
	if opts.Dir == "" {
		return nil, errors.New("soak: ClusterOptions.Dir is required")
	}
	if opts.Workers < 0 {
		return nil, fmt.Errorf("soak: Workers %d is negative", opts.Workers)
	}
	if opts.Workers == 0 {
		opts.Workers = DefaultWorkers
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	s, err := inproc.Start(ctx, inproc.Options{
		Dir:          dir,
		Workers:      opts.Workers,
		Bucket:       opts.Bucket,
		Prefix:       opts.Prefix,
		WorkerConfig: opts.WorkerConfig,
		BrokerConfig: func(c *broker.Config) {
			c.HTTPAddr = "none"
			c.DataDir = filepath.Join(dir, "broker")
			if opts.BrokerConfig != nil {
				opts.BrokerConfig(c)
			}
		},
		Logger:      opts.Logger,
		Restartable: true,
	})
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	return s, nil
}
