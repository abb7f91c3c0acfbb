package cli

import (
	"io"
	"os"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// ConsoleTimeFormat is the time format of the console log format.
const ConsoleTimeFormat = "15:04:05.000"

// NewLogger returns a logger writing to w from level on (debug, info, warn or error;
// anything else is info), as JSON lines or, with format "console", as lines for people,
// coloured only when w is a terminal.
func NewLogger(w io.Writer, level, format string) zerolog.Logger {
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: ConsoleTimeFormat, NoColor: !IsTerminal(w)}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
