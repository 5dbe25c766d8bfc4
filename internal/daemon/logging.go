package daemon

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// logSink is the writer under every component's logger. Its format (JSON for
// journald, or console for a person) can change under running goroutines, so
// that a reload's log.format applies at once to loggers already handed out.
type logSink struct {
	mu      sync.Mutex
	out     io.Writer
	console *zerolog.ConsoleWriter
}

func (s *logSink) setFormat(format string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if format == "console" {
		s.console = &zerolog.ConsoleWriter{Out: s.out, TimeFormat: time.RFC3339}
	} else {
		s.console = nil
	}
}

// Write implements io.Writer.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.console != nil {
		return s.console.Write(p)
	}
	return s.out.Write(p)
}

// setLogLevel sets the process-wide level, so that a reload changes it under
// running goroutines too.
func setLogLevel(name string) {
	level, err := zerolog.ParseLevel(name)
	if err != nil || name == "" {
		level = zerolog.InfoLevel
	}
	zerolog.SetGlobalLevel(level)
}

// NewLogger builds a logger of the given format and level on w, for the
// commands that log without a daemon (they report a config or database error
// before one exists).
func NewLogger(format, level string, w io.Writer) zerolog.Logger {
	sink := &logSink{out: w}
	sink.setFormat(format)
	setLogLevel(level)
	return zerolog.New(sink).With().Timestamp().Logger()
}
