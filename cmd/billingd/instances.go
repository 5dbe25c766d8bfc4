package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/billingd/billingd/internal/cluster"
	"github.com/billingd/billingd/internal/store"
)

// printInstances lists the instances registered on the database for
// `billingd status`: each one's host, version, heartbeat age, whether it is
// live, the share of the gateway's limits it published, and whether it claims
// work (with its note). A dead one is a row that expired without a clean stop
// (killed, frozen, cut off): its share is free and its row goes after a day.
func printInstances(ctx context.Context, out io.Writer, st *store.Store, now time.Time) error {
	rows, err := st.Instances(ctx)
	if err != nil || len(rows) == 0 {
		return err
	}
	if st.Dialect() == store.Postgres {
		// Heartbeats and expiries are written on the database's clock.
		if now, err = st.DBNow(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "\ninstances:")
	w := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tHOST\tVERSION\tHEARTBEAT\tSTATE\tRATE SHARE\tCONCURRENCY SHARE\tCLAIMING\tNOTE")
	for _, r := range rows {
		state := "live"
		if !cluster.Live(r, now) {
			state = "dead"
		}
		claiming := "yes"
		if !r.Claiming {
			claiming = "no"
		}
		age := now.Sub(r.HeartbeatAt).Round(time.Second)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s ago\t%s\t%s/s of %s\t%d of %d\t%s\t%s\n", r.Name, r.Host, r.Version, max(age, 0), state,
			formatRate(r.RateShare), formatRate(r.RateLimit), r.ConcurrencyShare, r.Concurrency, claiming, strings.TrimSpace(r.Note))
	}
	return w.Flush()
}

// formatRate prints a rate share with at most two decimals.
func formatRate(r float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", r), "0"), ".")
}
