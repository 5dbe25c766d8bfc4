package store

import (
	"context"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// ShareDecision is what an instance writes in its row at a heartbeat, decided
// from every row as read with the table locked (internal/cluster): its
// published rate and concurrency shares and its note. Decide may act before
// returning — lowering the share it uses before the row that says so is
// committed — and must not write to the database.
type ShareDecision func(rows []models.Instance, now time.Time) (rateShare float64, concurrencyShare int, note string, err error)

// BeatShares is Beat with the instance's published shares decided inside the
// transaction: the instances table is locked first (PostgreSQL: EXCLUSIVE
// mode, which readers pass and which holds until commit, so two instances'
// heartbeats — a joining one's insert included — never decide on the same
// rows at once), every row is read, decide picks this instance's shares from
// them, and the row is written. On PostgreSQL now is the database's clock
// read after the lock (the one every instance compares expiries on); the
// caller's now is used on SQLite. The rows returned are the ones after the
// write, with the now they were judged at.
func (s *Store) BeatShares(ctx context.Context, self models.Instance, now time.Time, expiry time.Duration, decide ShareDecision) ([]models.Instance, time.Time, error) {
	now = now.UTC()
	var all []models.Instance
	err := s.InTx(ctx, func(tx *Tx) error {
		if tx.dialect == Postgres {
			if _, err := tx.exec(`LOCK TABLE instances IN EXCLUSIVE MODE`); err != nil {
				return err
			}
			if err := tx.db.Raw(`SELECT clock_timestamp()`).Scan(&now).Error; err != nil {
				return err
			}
			now = now.UTC()
		}
		var rows []models.Instance
		if err := tx.db.Order("name").Find(&rows).Error; err != nil {
			return err
		}
		var err error
		self.RateShare, self.ConcurrencyShare, self.Note, err = decide(rows, now)
		if err != nil {
			return err
		}
		if err := tx.writeInstance(self, now, now.Add(expiry)); err != nil {
			return err
		}
		return tx.db.Order("name").Find(&all).Error
	})
	if err != nil {
		return nil, now, fmt.Errorf("store: instance heartbeat: %w", err)
	}
	return all, now, nil
}
