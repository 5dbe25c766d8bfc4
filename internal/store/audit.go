package store

import (
	"context"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// InsertAudit writes one operator action's audit row inside the caller's
// transaction: the row commits with the change it describes, or neither does.
func (tx *Tx) InsertAudit(now time.Time, e *models.AuditEntry) error {
	now = now.UTC()
	e.At, e.CreatedAt, e.UpdatedAt = now, now, now
	return tx.db.Create(e).Error
}

// AuditFilter narrows an audit listing; zero fields match everything.
type AuditFilter struct {
	TargetType string
	// TargetIDs, when set, are the target rows whose entries are listed.
	TargetIDs []int64
	Action    string
	Limit     int
}

// AuditEntries lists audit rows, oldest first.
func (s *Store) AuditEntries(ctx context.Context, f AuditFilter) ([]models.AuditEntry, error) {
	q := s.db.WithContext(ctx).Model(&models.AuditEntry{})
	if f.TargetType != "" {
		q = q.Where("target_type = ?", f.TargetType)
	}
	if len(f.TargetIDs) > 0 {
		q = q.Where("target_id IN ?", f.TargetIDs)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if f.Limit > 0 {
		q = q.Limit(f.Limit)
	}
	var out []models.AuditEntry
	return out, q.Order("id").Find(&out).Error
}
