package broker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/rs/zerolog"
)

// componentLogger returns the logger of one of the broker's parts, named in its
// "component" field. Each part's logger derives from the configured one, not from another
// part's: zerolog appends fields, so a second "component" would repeat the key.
func (c *Config) componentLogger(name string) zerolog.Logger {
	if c.Logger == nil {
		return zerolog.Nop()
	}
	return c.Logger.With().Str("component", name).Logger()
}

// mochiLogger returns the *slog.Logger mochi logs through, backed by zerolog.
func mochiLogger(zl zerolog.Logger) *slog.Logger {
	return slog.New(quietHandler{slog.Handler(zerolog.NewSlogHandler(zl))})
}

// quietHandler demotes two of mochi's warnings to debug: the message-less one it logs
// for every connection that ends with an error, including every client that simply goes
// away (EOF) and every refused login, and "error processing packet" (with the whole
// packet) for every denied publish; the broker logs refusals itself, with their reasons.
type quietHandler struct{ slog.Handler }

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn && (r.Message == "" || r.Message == "error processing packet") {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(attrs)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(name)}
}

// pebbleLogger sends the session store's logs (recovery notes and the like) to zerolog
// instead of the standard logger.
type pebbleLogger struct{ zl zerolog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.zl.Debug().Msgf(format, args...)
}

// Fatalf is called on unrecoverable store corruption; pebble expects it not to return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.zl.Error().Msg(msg)
	panic("session store: " + msg)
}
