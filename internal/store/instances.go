package store

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// deadInstanceKept is how long the row of an instance that stopped renewing
// it (killed, frozen, cut off) stays after it expired: long enough for
// `billingd status` and the missing-instance alert to show it, after which
// the next heartbeat of any instance deletes it. A clean stop deletes its own
// row at once.
const deadInstanceKept = 24 * time.Hour

// Beat writes this instance's row (inserting it on the first beat) with
// heartbeat_at = now and expires_at = expires, deletes rows dead for longer
// than a day, and returns every row — live and recently dead — ordered by
// name, in one transaction. The caller's now is the cluster's time
// (DBNow-aligned), so every instance compares expiries on one clock.
func (s *Store) Beat(ctx context.Context, self models.Instance, now, expires time.Time) ([]models.Instance, error) {
	now, expires = now.UTC(), expires.UTC()
	var all []models.Instance
	err := s.InTx(ctx, func(tx *Tx) error {
		if err := tx.writeInstance(self, now, expires); err != nil {
			return err
		}
		return tx.db.Order("name").Find(&all).Error
	})
	if err != nil {
		return nil, fmt.Errorf("store: instance heartbeat: %w", err)
	}
	return all, nil
}

// writeInstance upserts this instance's row (heartbeat_at = now, expires_at
// = expires) and deletes the rows dead for longer than deadInstanceKept.
func (tx *Tx) writeInstance(self models.Instance, now, expires time.Time) error {
	n, err := tx.exec(`UPDATE instances SET heartbeat_at = ?, expires_at = ?, rate_limit = ?, concurrency = ?,
	          rate_share = ?, concurrency_share = ?, claiming = ?, note = ?, schema_version = ?, version = ?
	    WHERE name = ?`, now, expires, self.RateLimit, self.Concurrency, self.RateShare, self.ConcurrencyShare,
		self.Claiming, self.Note, self.SchemaVersion, self.Version, self.Name)
	if err != nil {
		return err
	}
	if n == 0 {
		if self.StartedAt.IsZero() {
			self.StartedAt = now
		}
		if _, err := tx.exec(`INSERT INTO instances (name, host, pid, version, schema_version, started_at, heartbeat_at, expires_at,
		          rate_limit, concurrency, rate_share, concurrency_share, claiming, note)
		          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			self.Name, self.Host, self.PID, self.Version, self.SchemaVersion, self.StartedAt.UTC(), now, expires,
			self.RateLimit, self.Concurrency, self.RateShare, self.ConcurrencyShare, self.Claiming, self.Note); err != nil {
			return err
		}
	}
	if _, err := tx.exec(`DELETE FROM instances WHERE expires_at < ?`, now.Add(-deadInstanceKept)); err != nil {
		return err
	}
	return nil
}

// LeaveCluster deletes this instance's row: a clean stop, after which the
// others take its share at their next heartbeat.
func (s *Store) LeaveCluster(ctx context.Context, name string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(`DELETE FROM instances WHERE name = ?`, name)
		return err
	})
}

// Instances lists every registered instance, live and recently dead, by name
// (`billingd status`, the cluster gauges).
func (s *Store) Instances(ctx context.Context) ([]models.Instance, error) {
	var all []models.Instance
	err := s.db.WithContext(ctx).Order("name").Find(&all).Error
	return all, err
}

// DBNow is the database server's clock (PostgreSQL's clock_timestamp()), which
// every instance's leases and heartbeats are measured on, whatever each
// host's clock says (docs/protocol.md, "No send on a lost lease"). On SQLite, where one process runs, it is
// the local clock.
func (s *Store) DBNow(ctx context.Context) (time.Time, error) {
	if s.dialect != Postgres {
		return time.Now().UTC(), nil
	}
	var t time.Time
	if err := s.sqlDB.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// KnownSchemaVersion is the newest migration this build embeds for the
// store's dialect (SQL files and Go migrations alike): a database whose
// schema is newer was migrated by a newer billingd.
func (s *Store) KnownSchemaVersion() int64 {
	p, err := s.migrationProvider()
	if err != nil {
		return 0
	}
	var newest int64
	for _, src := range p.ListSources() {
		newest = max(newest, src.Version)
	}
	return newest
}

// SchemaVersion is the newest migration applied to the database (goose's
// version table; 0 before the first migration). It takes no lock, so every
// instance reads it at every heartbeat.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	return s.schemaVersion(ctx)
}

// ExpireInstance marks the row of an instance known to be gone as dead at
// once (expires_at = its last heartbeat), so the live ones take its share of
// the gateway's limits now instead of after its expiry. Only the host it ran
// on can know that (its pid is not running there any more); a live instance
// whose row was expired by mistake revives it at its next heartbeat.
func (s *Store) ExpireInstance(ctx context.Context, name string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(`UPDATE instances SET expires_at = heartbeat_at WHERE name = ? AND expires_at > heartbeat_at`, name)
		return err
	})
}
