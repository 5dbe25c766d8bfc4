package models

import "time"

// Instance is one running billingd process on the database (the instances
// table): what `billingd status` and /metrics show as the cluster, and what
// each instance reads to take its share of the gateway's limits. A row whose
// ExpiresAt has passed is a dead instance.
type Instance struct {
	// Name is the process's lease owner (host:pid:start): its claims carry
	// the same string, so a row names who holds what.
	Name    string `gorm:"primaryKey"`
	Host    string
	PID     int `gorm:"column:pid"`
	Version string
	// SchemaVersion is the newest migration the instance's binary knows.
	SchemaVersion int64
	StartedAt     time.Time
	HeartbeatAt   time.Time
	ExpiresAt     time.Time
	// RateLimit and Concurrency are the instance's configured cluster-wide
	// gateway limits; instances whose configs disagree all use the smallest.
	RateLimit   float64
	Concurrency int
	// RateShare and ConcurrencyShare are what the instance has published it
	// uses now: the live rows' shares never add up to more than the limits.
	RateShare        float64
	ConcurrencyShare int
	// Claiming is false while the instance has stopped taking new work (the
	// database's schema is newer than its binary knows).
	Claiming bool
	// Note says why, when the instance is not claiming or its config
	// disagrees with the others'.
	Note string
}

// TableName is the instances table.
func (Instance) TableName() string { return "instances" }

// JobLease is the row a periodic job that must not run twice at once holds
// while one instance runs it: owner until LeaseUntil, fenced by
// LeaseVersion.
type JobLease struct {
	Name         string `gorm:"primaryKey"`
	Owner        string
	LeaseUntil   *time.Time
	LeaseVersion int64
	UpdatedAt    time.Time
}

// TableName is the job_leases table.
func (JobLease) TableName() string { return "job_leases" }
