-- +goose Up
-- One row per running billingd process on this database (DESIGN §2,
-- "Several instances"). name is the process's lease owner (host:pid:start),
-- the same string its claims write in lease_owner. Each instance renews
-- heartbeat_at and expires_at every cluster.heartbeat; a row whose expires_at
-- has passed is a dead instance (killed, frozen, cut off) and the live ones
-- take its share of the gateway's limits. A clean stop deletes its row.
-- rate_limit and concurrency are the instance's configured cluster-wide
-- limits (instances mid-reload may disagree: all use the smallest);
-- rate_share and concurrency_share are what it has published it uses now,
-- so the sum over live rows never exceeds the cluster's limits.
-- schema_version is the newest migration its binary knows; claiming is
-- false while it has stopped claiming work (a newer schema it cannot honour).
CREATE TABLE instances (
    name              TEXT    PRIMARY KEY,
    host              TEXT    NOT NULL,
    pid               INTEGER NOT NULL,
    version           TEXT    NOT NULL,
    schema_version    INTEGER  NOT NULL,
    started_at        DATETIME NOT NULL,
    heartbeat_at      DATETIME NOT NULL,
    expires_at        DATETIME NOT NULL,
    rate_limit        REAL NOT NULL,
    concurrency       INTEGER NOT NULL,
    rate_share        REAL NOT NULL DEFAULT 0,
    concurrency_share INTEGER NOT NULL DEFAULT 0,
    claiming          BOOLEAN NOT NULL DEFAULT TRUE,
    note              TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX instances_expires ON instances (expires_at);

-- Periodic maintenance that must run on one instance at a time holds the
-- lease row of its name: owner until lease_until, fenced by lease_version.
CREATE TABLE job_leases (
    name          TEXT    PRIMARY KEY,
    owner         TEXT    NOT NULL DEFAULT '',
    lease_until   DATETIME,
    lease_version INTEGER  NOT NULL DEFAULT 0,
    updated_at    DATETIME NOT NULL
);

-- +goose Down
DROP TABLE job_leases;
DROP TABLE instances;
