package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/billingd/billingd/internal/store"
)

// printSchemaStatus is the part of `billingd status` about mixed versions,
// printed only when something is off: the database's schema is newer than
// this billingd knows (a newer one migrated it during a rolling upgrade, and
// instances of this version claim no work), or a live instance says it is not
// claiming, with its note.
func printSchemaStatus(ctx context.Context, out io.Writer, st *store.Store, now time.Time) error {
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if known := st.KnownSchemaVersion(); v > known {
		fmt.Fprintf(out, "\nschema: version %d in the database is newer than this billingd knows (%d): a newer billingd migrated it; instances of this version claim no work — upgrade them\n", v, known)
	}
	all, err := st.Instances(ctx)
	if err != nil {
		return err
	}
	for _, in := range all {
		if in.Claiming || !in.ExpiresAt.After(now) {
			continue
		}
		fmt.Fprintf(out, "instance %s (billingd %s, schema %d) is not claiming work: %s\n", in.Name, in.Version, in.SchemaVersion, in.Note)
	}
	return nil
}

// upToDate is what `billingd migrate` says when it applied nothing: that the
// database is up to date, or that a newer billingd migrated it past what this
// one knows (nothing is migrated down; instances of this version claim no
// work there).
func upToDate(ctx context.Context, st *store.Store) string {
	v, err := st.SchemaVersion(ctx)
	if known := st.KnownSchemaVersion(); err == nil && v > known {
		return fmt.Sprintf("nothing to do: the database's schema (version %d) is newer than this billingd knows (%d); a newer billingd migrated it, and instances of this version claim no work on it — upgrade this binary", v, known)
	}
	return "database is up to date"
}
