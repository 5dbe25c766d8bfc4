package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/rs/zerolog"
)

// loadConfig reads and validates the config; any problem is a usage error (exit 2)
// listing every bad key.
func (m *Main) loadConfig(path string) (*config.Config, error) {
	return m.loadConfigFor(path, config.NeedAll)
}

func indentErr(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}

// newLogger builds the logger of the config for commands that log without a
// daemon.
func newLogger(cfg config.LogConfig, w io.Writer) zerolog.Logger {
	return daemon.NewLogger(cfg.Format, cfg.Level, w)
}

// openStore opens the config's database for a command; exclusive takes the
// SQLite instance lock. What opening did to the files' modes (tightened to
// 0600) is said on stderr, where one-shot commands log.
func openStore(ctx context.Context, cfg *config.Config, exclusive bool) (*store.Store, error) {
	st, err := daemon.OpenStore(ctx, cfg, exclusive, nil)
	if err == nil {
		for _, n := range st.FileNotices() {
			fmt.Fprintf(os.Stderr, "billingd: %s\n", n)
		}
	}
	return st, err
}

// runSummary is the one line that says what a billing pass did.
func runSummary(run *models.BillingRun) string {
	return fmt.Sprintf("billing run %d %s in %dms: %d due, %d invoiced, %d attempts (%d replayed): %d succeeded, %d processing, %d requires_action, %d declined, %d failed, %d unknown",
		run.ID, run.Status, run.DurationMS, run.SubscriptionsDue, run.InvoicesCreated, run.AttemptsStarted+run.AttemptsReplayed,
		run.AttemptsReplayed, run.Succeeded, run.Processing, run.RequiresAction, run.Declined, run.Failed, run.Unknown)
}
