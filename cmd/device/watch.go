package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/bytesize"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/libmetrics"
	"github.com/clipgate/clipgate/internal/ops"
)

type watchCmd struct {
	cli.Ops
	Dir          string                 `arg:"" name:"DIR" help:"Spool directory the recorder writes clips into (it must exist)."`
	Settle       time.Duration          `default:"5s" help:"How long a file must keep its size and modification time to count as finished (a file renamed into place counts at once)."`
	After        string                 `enum:"remove,move" default:"remove" help:"What becomes of an uploaded clip: remove (the default: the file is DELETED once it is stored and its event durable), or move into --done-dir."`
	DoneDir      string                 `help:"Where --after=move puts uploaded clips; on DIR's filesystem (default DIR/done)." placeholder:"DIR"`
	MaxBytes     bytesize.Size          `default:"0" help:"Drop the oldest clips, each announced with a failed event, while the spool holds more than this: bytes or a size such as 500MB or 2GiB; 0 for no bound." placeholder:"SIZE"`
	MaxAge       time.Duration          `default:"0s" help:"Drop clips older than this (by modification time), each announced with a failed event; 0 for no bound."`
	PollInterval time.Duration          `default:"2s" help:"Period of the directory scan that runs besides inotify."`
	NoNotify     bool                   `help:"Do not use inotify; rely on the scan alone (every clip then waits --settle)."`
	Class        []devicekit.SpoolClass `sep:";" help:"Priority classes, highest first (repeat the flag or separate with ';'): NAME=MATCH[,MATCH...][@HH:MM-HH:MM,...], a MATCH ending in / being a subdirectory of DIR and any other a file name pattern; the windows (local time) are when the class may upload. Clips go in class order, oldest first within a class; --max-bytes drops the lowest class first. E.g. --class event=event/,evt-* --class continuous=continuous/@22:00-06:00." placeholder:"CLASS"`
}

// watch uploads the clips a recorder writes into the spool directory until ctx ends
// (SIGINT, SIGTERM). It writes one line per clip on stdout:
//
//	ok  FILE -> oss://BUCKET/KEY size=N crc64=N event=ID     uploaded (then removed or moved)
//	DROP FILE event=ID: REASON                               deleted by --max-bytes or --max-age
//	REJECT FILE event=ID: REASON                             not uploadable (empty); kept
//	SKIP FILE: REASON                                        not a regular file; left alone
//
// Failed attempts are retried with backoff and logged on stderr. The spool starts
// whether or not the broker can be reached: clips wait (within the bounds) until it can.
// A missing spool directory is a usage error; losing it, or failing to remove an
// uploaded clip, ends the command with status 1.
func (m *Main) watch(ctx context.Context) error {
	w := m.cli.Watch
	sc := devicekit.SpoolConfig{
		Dir:          w.Dir,
		Settle:       w.Settle,
		After:        devicekit.AfterUpload(w.After),
		DoneDir:      w.DoneDir,
		MaxBytes:     int64(w.MaxBytes),
		MaxAge:       w.MaxAge,
		PollInterval: w.PollInterval,
		NoNotify:     w.NoNotify,
		Classes:      w.Class,
		OnEvent:      m.watchLine,
	}
	// A usage error is told before the state directory is opened (another process of
	// the camera may hold it).
	if err := sc.Validate(); err != nil {
		return cli.Usage(err)
	}
	kit, kc, err := m.newKit(false)
	var inUse *devicekit.StateInUseError
	if errors.As(err, &inUse) {
		return busyError(inUse, kc.DeviceID)
	}
	if err != nil {
		return err
	}
	defer kit.Close()
	spool, err := devicekit.NewSpool(kit, sc)
	if err != nil {
		return cli.Usage(err)
	}
	reg := ops.NewRegistry("device")
	reg.MustRegister(libmetrics.DeviceCollector(kit, spool))
	opsSrv, err := ops.Serve(w.MetricsAddr, "device", reg, libmetrics.DeviceReady(kit))
	if err != nil {
		return cli.Usage(fmt.Errorf("--metrics-addr: %w", err))
	}
	defer opsSrv.Close()
	if m.onOpsAddr != nil {
		m.onOpsAddr(opsSrv.Addr())
	}

	cctx, stopConnecting := context.WithCancel(ctx)
	connected := make(chan struct{})
	go func() {
		defer close(connected)
		m.connectLoop(cctx, kit, kc.BrokerURL)
	}()
	err = spool.Run(ctx)
	stopConnecting()
	<-connected
	if err != nil {
		return fmt.Errorf("watch %s: %w", w.Dir, err)
	}
	return nil
}

// connectLoop connects kit, trying again after every --timeout until it succeeds or
// ctx ends; the spool meanwhile keeps clips (and their events) for later.
func (m *Main) connectLoop(ctx context.Context, kit *devicekit.Kit, broker string) {
	for {
		actx, cancel := context.WithTimeout(ctx, m.cli.Timeout)
		err := kit.Connect(actx)
		cancel()
		switch {
		case err == nil:
			m.log.Info().Str("broker", broker).Msg("connected")
			return
		case ctx.Err() != nil || errors.Is(err, devicekit.ErrClosed):
			return
		}
		m.log.Warn().Err(err).Msg("not connected to the broker; clips wait in the spool")
		select { // a refusal returns at once: do not spin
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// watchLine prints the line of a spool outcome.
func (m *Main) watchLine(e devicekit.SpoolEvent) {
	switch e.Kind {
	case devicekit.SpoolUploaded:
		if ev := e.Event; ev != nil {
			fmt.Fprintf(m.Stdout, "ok  %s -> oss://%s/%s size=%d crc64=%s event=%s\n", e.Path, ev.Bucket, ev.Key, ev.Size, ev.CRC64, ev.ID)
		}
	case devicekit.SpoolDropped:
		fmt.Fprintf(m.Stdout, "DROP %s event=%s: %s\n", e.Path, e.Event.ID, e.Event.Error)
	case devicekit.SpoolRejected:
		fmt.Fprintf(m.Stdout, "REJECT %s event=%s: %s\n", e.Path, e.Event.ID, e.Event.Error)
	case devicekit.SpoolSkipped:
		fmt.Fprintf(m.Stdout, "SKIP %s: %v\n", e.Path, e.Err)
	}
}
