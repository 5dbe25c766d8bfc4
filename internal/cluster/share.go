// Package cluster computes how the live billingd instances on one PostgreSQL
// database split the gateway's limits (gateway.rate_limit and
// gateway.concurrency are the merchant account's, not one process's), and the
// order in which an instance changes and publishes its share so that the
// shares in use never add up to more than the limits (docs/cluster.md).
//
// It is pure: the instances rows, this instance's name, its configured limits
// and the cluster's time go in; the share to use and publish comes out. The
// store reads and writes the rows (in one transaction, the table locked) and
// the daemon applies the result to its limiter.
package cluster

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// Limits are an instance's configured cluster-wide gateway limits.
type Limits struct {
	// Rate is gateway.rate_limit: requests per second.
	Rate float64
	// Concurrency is gateway.concurrency: requests open at once.
	Concurrency int
}

// Share is the part of the limits one instance uses.
type Share struct {
	Rate        float64
	Concurrency int
}

// Disagreement is a live instance whose configured limits differ from this
// one's (a reload under way on some hosts): every instance then uses the
// smallest, and says so.
type Disagreement struct {
	Name   string
	Limits Limits
}

// Plan is what one heartbeat decides for this instance.
type Plan struct {
	// Limits are the cluster's limits in force: the smallest configured by
	// any live instance.
	Limits Limits
	// Live is how many instances are live, this one included.
	Live int
	// Rank is this instance's place among the live ones by name (0 first):
	// the first Limits.Concurrency % Live get one more request slot.
	Rank int
	// Target is this instance's fair share: Limits split evenly.
	Target Share
	// Headroom is what the others' published shares leave free: Limits
	// minus the published shares of the other live rows, never negative.
	Headroom Share
	// Next is the share to use and publish now: Target, cut to Headroom.
	Next Share
	// Disagree lists the live instances configured with other limits.
	Disagree []Disagreement
}

// Live reports whether an instance row is live at now: its expiry has not
// passed. A row past its expiry is a dead instance whose share is free.
func Live(row models.Instance, now time.Time) bool { return row.ExpiresAt.After(now) }

// Compute decides this instance's share from every instances row (as read
// with the table locked), its name, its configured limits and the cluster's
// time now. This instance counts as live whatever its row says (it is
// beating now); a row of its own is not counted among the others.
func Compute(rows []models.Instance, self string, own Limits, now time.Time) Plan {
	p := Plan{Limits: own}
	names := []string{self}
	var othersRate float64
	var othersConc int
	for _, r := range rows {
		if r.Name == self || !Live(r, now) {
			continue
		}
		names = append(names, r.Name)
		othersRate += r.RateShare
		othersConc += r.ConcurrencyShare
		theirs := Limits{Rate: r.RateLimit, Concurrency: r.Concurrency}
		if theirs != own {
			p.Disagree = append(p.Disagree, Disagreement{Name: r.Name, Limits: theirs})
		}
		if r.RateLimit > 0 && r.RateLimit < p.Limits.Rate {
			p.Limits.Rate = r.RateLimit
		}
		if r.Concurrency > 0 && r.Concurrency < p.Limits.Concurrency {
			p.Limits.Concurrency = r.Concurrency
		}
	}
	sort.Strings(names)
	p.Live = len(names)
	p.Rank = sort.SearchStrings(names, self)
	p.Target = Split(p.Limits, p.Live, p.Rank)
	p.Headroom = Share{
		Rate:        math.Max(0, p.Limits.Rate-othersRate),
		Concurrency: max(0, p.Limits.Concurrency-othersConc),
	}
	if p.Headroom.Rate < p.Limits.Rate*headroomEpsilon {
		// What floating point leaves over when the others hold everything
		// is nothing, not a share so small that its first token is years
		// away.
		p.Headroom.Rate = 0
	}
	p.Next = Share{
		Rate:        math.Min(p.Target.Rate, p.Headroom.Rate),
		Concurrency: min(p.Target.Concurrency, p.Headroom.Concurrency),
	}
	return p
}

// Split is the fair share of the instance of rank among live instances:
// the rate divided evenly (rounded down a hair so that live shares never add
// up to more than the limit in floating point), the concurrency divided into
// whole requests, the remainder going one each to the first ranks, so the
// integers add up to exactly the limit.
func Split(l Limits, live, rank int) Share {
	if live <= 0 {
		return Share{}
	}
	conc := l.Concurrency / live
	if rank < l.Concurrency%live {
		conc++
	}
	return Share{Rate: roundDown(l.Rate / float64(live)), Concurrency: conc}
}

// headroomEpsilon is the part of the rate limit below which headroom counts
// as none (far above roundDown's cut, far below any usable share).
const headroomEpsilon = 1e-6

// roundDown cuts a rate share to a value whose multiples never exceed what
// they divide (1e-9 relative is far below any limiter's resolution).
func roundDown(x float64) float64 { return x * (1 - 1e-9) }

// Step is the order in which an instance moves from the share it uses to
// the share it will publish, so that no instance ever uses more than it has
// published: a smaller share is taken into use before the new row is
// committed (Lower), a larger one only after (Raise).
type Step struct {
	// Lower is the share to use before publishing (Use.Rate <= current and
	// Use.Concurrency <= current, each only where it drops).
	Lower Share
	// Raise is the share to use once the publication committed.
	Raise Share
}

// StepFrom splits the move from cur to next into what is lowered before the
// publication and what is raised after it, per limit.
func StepFrom(cur, next Share) Step {
	return Step{
		Lower: Share{Rate: math.Min(cur.Rate, next.Rate), Concurrency: min(cur.Concurrency, next.Concurrency)},
		Raise: next,
	}
}

// Published is the concurrency share an instance writes in its row: its next
// share, or the requests still open under the larger one it had, if more —
// a lowered cap stops new requests at once, but the ones already sent are
// still at the gateway until they answer.
func Published(next Share, inFlight int) Share {
	if inFlight > next.Concurrency {
		next.Concurrency = inFlight
	}
	return next
}

// Note describes a disagreement for the instances row and the log: this
// instance's limits, each other value seen, and the smallest used.
func (p Plan) Note(own Limits) string {
	if len(p.Disagree) == 0 {
		return ""
	}
	d := p.Disagree[0]
	s := fmt.Sprintf("gateway limits differ between instances: rate_limit %g, concurrency %d here, rate_limit %g, concurrency %d on %s",
		own.Rate, own.Concurrency, d.Limits.Rate, d.Limits.Concurrency, d.Name)
	if n := len(p.Disagree) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return s + fmt.Sprintf("; all use the smallest: rate_limit %g, concurrency %d", p.Limits.Rate, p.Limits.Concurrency)
}

// Expired reports whether a share taken at a heartbeat that started at
// beatStarted is no longer this instance's to use at now: its row's expiry
// (beatStarted + expiry) has passed, so the others may already have taken
// it. The two instants are read on the process's monotonic clock, which a
// SIGSTOP or a frozen VM cannot fool: a resumed instance uses nothing until
// its next heartbeat succeeds.
func Expired(beatStarted, now time.Time, expiry time.Duration) bool {
	return now.Sub(beatStarted) >= expiry
}
