package models

import "time"

// AuditVia says through what door an operator acted.
type AuditVia string

const (
	// ViaCLI: a `billingd` command on the operator's machine.
	ViaCLI AuditVia = "cli"
	// ViaAdminAPI: a request to the admin API, under a named token.
	ViaAdminAPI AuditVia = "admin_api"
	// ViaSystem: billingd itself carried out an operator's earlier decision
	// (a cancel at period end reaching its date).
	ViaSystem AuditVia = "system"
)

// AuditEntry is one operator action: who did what to which object, why, and
// the object before and after, written in the transaction that made the
// change, so the log can never show an action that did not happen or miss
// one that did.
type AuditEntry struct {
	ID     int64 `gorm:"primaryKey"`
	Actor  string
	Via    AuditVia
	Action string
	// TargetType is subscription, invoice, attempt, dunning_case or refund;
	// TargetID its row id and TargetRef its public name (the subscription's
	// reference, the invoice's order id).
	TargetType string
	TargetID   int64
	TargetRef  string
	Reason     string
	BeforeJSON string `gorm:"column:before_json"`
	AfterJSON  string `gorm:"column:after_json"`
	At         time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// TableName pins the table name.
func (AuditEntry) TableName() string { return "audit_log" }

// AdminRequest is the admin API's memory of one Idempotency-Key of one token:
// the request's hash and the answer given, replayed for the same key and
// body. It expires after a day, except a refund's, which lives as long as
// the refund.
type AdminRequest struct {
	ID             int64 `gorm:"primaryKey"`
	TokenName      string
	IdempotencyKey string
	RequestHash    string
	Method         string
	Path           string
	StatusCode     int
	ResponseBody   string
	RefundID       *int64
	ExpiresAt      *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// TableName pins the table name.
func (AdminRequest) TableName() string { return "admin_requests" }
