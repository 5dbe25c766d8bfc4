package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

const expiry = 15 * time.Second

// row is a live (or, with dead, expired) instance publishing share under
// limits.
func row(name string, l Limits, s Share, dead bool) models.Instance {
	exp := t0.Add(expiry)
	if dead {
		exp = t0.Add(-time.Second)
	}
	return models.Instance{Name: name, RateLimit: l.Rate, Concurrency: l.Concurrency,
		RateShare: s.Rate, ConcurrencyShare: s.Concurrency, HeartbeatAt: exp.Add(-expiry), ExpiresAt: exp}
}

var hundred = Limits{Rate: 100, Concurrency: 8}

func TestSplitConcurrencyNeverOverLimit(t *testing.T) {
	for c := 0; c <= 40; c++ {
		for live := 1; live <= 7; live++ {
			t.Run(fmt.Sprintf("c%d_n%d", c, live), func(t *testing.T) {
				sumC, sumR := 0, 0.0
				for rank := 0; rank < live; rank++ {
					s := Split(Limits{Rate: 100, Concurrency: c}, live, rank)
					require.GreaterOrEqual(t, s.Concurrency, c/live)
					require.LessOrEqual(t, s.Concurrency, c/live+1)
					sumC += s.Concurrency
					sumR += s.Rate
				}
				require.Equal(t, c, sumC, "the whole concurrency is handed out, never more")
				require.LessOrEqual(t, sumR, 100.0)
				require.InDelta(t, 100.0, sumR, 1e-6)
			})
		}
	}
}

func TestCompute(t *testing.T) {
	tests := []struct {
		name     string
		rows     []models.Instance
		self     string
		own      Limits
		live     int
		next     Share
		limits   Limits
		disagree int
	}{
		{name: "alone takes everything", self: "a", own: hundred, live: 1, next: Share{100, 8}, limits: hundred},
		{name: "alone with a stale row of its own", self: "a", own: hundred,
			rows: []models.Instance{row("a", hundred, Share{10, 1}, true)}, live: 1, next: Share{100, 8}, limits: hundred},
		{name: "joining starts at nothing while the other holds everything", self: "b", own: hundred,
			rows: []models.Instance{row("a", hundred, Share{100, 8}, false)}, live: 2, next: Share{0, 0}, limits: hundred},
		{name: "the holder lowers to its half", self: "a", own: hundred,
			rows: []models.Instance{row("a", hundred, Share{100, 8}, false), row("b", hundred, Share{}, false)},
			live: 2, next: Share{50, 4}, limits: hundred},
		{name: "the joiner then takes the half left", self: "b", own: hundred,
			rows: []models.Instance{row("a", hundred, Share{50, 4}, false), row("b", hundred, Share{}, false)},
			live: 2, next: Share{50, 4}, limits: hundred},
		{name: "a dead instance's share is reserved until its row expires", self: "a", own: hundred,
			rows: []models.Instance{row("a", hundred, Share{33, 3}, false), row("b", hundred, Share{33, 3}, false), row("c", hundred, Share{33, 2}, false)},
			live: 3, next: Share{33.333333, 3}, limits: hundred},
		{name: "then the rest take it", self: "a", own: hundred,
			rows: []models.Instance{row("a", hundred, Share{33, 3}, false), row("b", hundred, Share{33, 3}, false), row("c", hundred, Share{33, 2}, true)},
			live: 2, next: Share{50, 4}, limits: hundred},
		{name: "raising stops at what the others still publish", self: "a", own: hundred,
			rows: []models.Instance{row("b", hundred, Share{66, 6}, false)}, live: 2, next: Share{34, 2}, limits: hundred},
		{name: "the remainder of the concurrency goes by rank", self: "b", own: Limits{Rate: 100, Concurrency: 5},
			rows: []models.Instance{row("a", Limits{100, 5}, Share{}, false), row("c", Limits{100, 5}, Share{}, false)},
			live: 3, next: Share{33.333333, 2}, limits: Limits{100, 5}},
		{name: "disagreeing configs use the smallest of each", self: "a", own: hundred,
			rows: []models.Instance{row("b", Limits{80, 12}, Share{}, false), row("c", Limits{120, 6}, Share{}, false)},
			live: 3, next: Share{26.666666, 2}, limits: Limits{80, 6}, disagree: 2},
		{name: "a dead instance's config does not count", self: "a", own: hundred,
			rows: []models.Instance{row("b", Limits{10, 1}, Share{}, true)}, live: 1, next: Share{100, 8}, limits: hundred},
		{name: "over-published others leave no headroom, never a negative one", self: "a", own: Limits{50, 4},
			rows: []models.Instance{row("b", hundred, Share{100, 8}, false)}, live: 2, next: Share{0, 0}, limits: Limits{50, 4}, disagree: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compute(tt.rows, tt.self, tt.own, t0)
			require.Equal(t, tt.live, p.Live)
			require.Equal(t, tt.limits, p.Limits)
			require.InDelta(t, tt.next.Rate, p.Next.Rate, 1e-5)
			require.Equal(t, tt.next.Concurrency, p.Next.Concurrency)
			require.Len(t, p.Disagree, tt.disagree)
			require.GreaterOrEqual(t, p.Headroom.Rate, 0.0)
			require.GreaterOrEqual(t, p.Headroom.Concurrency, 0)
			if tt.disagree > 0 {
				require.Contains(t, p.Note(tt.own), fmt.Sprintf("rate_limit %g", tt.own.Rate))
				require.Contains(t, p.Note(tt.own), fmt.Sprintf("rate_limit %g, concurrency %d on", tt.rows[0].RateLimit, tt.rows[0].Concurrency))
				require.Contains(t, p.Note(tt.own), fmt.Sprintf("all use the smallest: rate_limit %g, concurrency %d", tt.limits.Rate, tt.limits.Concurrency))
			} else {
				require.Empty(t, p.Note(tt.own))
			}
		})
	}
}

func TestStepLowersBeforeAndRaisesAfterPublishing(t *testing.T) {
	tests := []struct {
		name       string
		cur, next  Share
		lower      Share
		inFlight   int
		publishedC int
	}{
		{name: "raise both", cur: Share{10, 1}, next: Share{50, 4}, lower: Share{10, 1}, publishedC: 4},
		{name: "lower both", cur: Share{50, 4}, next: Share{25, 2}, lower: Share{25, 2}, inFlight: 4, publishedC: 4},
		{name: "lower both, in flight drained", cur: Share{50, 4}, next: Share{25, 2}, lower: Share{25, 2}, inFlight: 1, publishedC: 2},
		{name: "rate down, concurrency up", cur: Share{50, 2}, next: Share{25, 4}, lower: Share{25, 2}, publishedC: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := StepFrom(tt.cur, tt.next)
			require.Equal(t, tt.lower, s.Lower)
			require.Equal(t, tt.next, s.Raise)
			require.LessOrEqual(t, s.Lower.Rate, tt.cur.Rate)
			require.LessOrEqual(t, s.Lower.Concurrency, tt.cur.Concurrency)
			p := Published(tt.next, tt.inFlight)
			require.Equal(t, tt.publishedC, p.Concurrency)
			require.Equal(t, tt.next.Rate, p.Rate)
		})
	}
}

func TestExpired(t *testing.T) {
	require.False(t, Expired(t0, t0.Add(expiry-time.Millisecond), expiry))
	require.True(t, Expired(t0, t0.Add(expiry), expiry))
}

// member is a simulated instance following the protocol: what it uses and
// what its row says.
type member struct {
	name      string
	limits    Limits
	use       Share
	row       models.Instance
	alive     bool // beating
	lastBeat  time.Time
	hasRow    bool
	published Share
}

// TestProtocolNeverOverLimit plays heartbeats of instances joining, leaving
// cleanly, dying, pausing past their expiry and resuming, and reloading to
// other limits, one beat at a time in an arbitrary order, and checks after
// every step that what the instances use adds up to no more than the
// smallest limit any live instance is configured with (counting the shares
// of instances that died, until their rows expire), and that each settles
// on its fair share.
func TestProtocolNeverOverLimit(t *testing.T) {
	const beat = 5 * time.Second
	now := t0
	members := map[string]*member{}
	order := []string{}
	add := func(name string, l Limits) {
		members[name] = &member{name: name, limits: l, alive: true}
		order = append(order, name)
	}
	rows := func() []models.Instance {
		var out []models.Instance
		for _, n := range order {
			if m := members[n]; m.hasRow {
				out = append(out, m.row)
			}
		}
		return out
	}
	beatOne := func(m *member) {
		if !m.alive {
			return
		}
		cur := m.use
		if m.hasRow && Expired(m.lastBeat, now, 3*beat) {
			cur = Share{}
		}
		p := Compute(rows(), m.name, m.limits, now)
		step := StepFrom(cur, p.Next)
		m.use = step.Lower
		checkUse(t, members, order, now, "after lowering "+m.name)
		m.published = Published(p.Next, 0)
		m.row = models.Instance{Name: m.name, RateLimit: m.limits.Rate, Concurrency: m.limits.Concurrency,
			RateShare: m.published.Rate, ConcurrencyShare: m.published.Concurrency, ExpiresAt: now.Add(3 * beat)}
		m.hasRow, m.lastBeat = true, now
		m.use = step.Raise
		checkUse(t, members, order, now, "after raising "+m.name)
	}
	round := func(names ...string) {
		for _, n := range names {
			beatOne(members[n])
		}
		now = now.Add(beat)
		// A paused member uses nothing once its last beat is past expiry.
		for _, n := range order {
			m := members[n]
			if m.hasRow && Expired(m.lastBeat, now, 3*beat) {
				m.use = Share{}
			}
		}
		checkUse(t, members, order, now, "after the round")
	}
	settled := func(want Share, names ...string) {
		t.Helper()
		for _, n := range names {
			require.InDelta(t, want.Rate, members[n].use.Rate, 1e-6, n)
		}
	}

	add("a", hundred)
	round("a")
	settled(Share{Rate: 100}, "a")
	add("b", hundred)
	add("c", hundred)
	round("c", "b", "a") // the joiners see a's whole share: nothing for them yet
	require.Zero(t, members["b"].use.Rate)
	round("c", "b", "a")
	round("a", "c", "b")
	settled(Share{Rate: 100.0 / 3}, "a", "b", "c")

	// b dies: its share stays reserved until its row expires, then a and c
	// take it.
	members["b"].alive = false
	for i := 0; i < 2; i++ { // b beat 5s ago; its row lives 15s
		round("a", "c")
		require.InDelta(t, 100.0/3, members["a"].use.Rate, 1e-6)
	}
	round("a", "c")
	round("c", "a")
	settled(Share{Rate: 50}, "a", "c")

	// b resumes (SIGCONT): it used nothing while expired and joins again.
	members["b"].alive = true
	round("b", "a", "c")
	require.Zero(t, members["b"].use.Rate, "what rounding leaves over is no share")
	round("a", "c", "b")
	round("b", "c", "a")
	settled(Share{Rate: 100.0 / 3}, "a", "b", "c")

	// c reloads to a smaller limit: everyone follows the smallest.
	members["c"].limits = Limits{Rate: 60, Concurrency: 8}
	members["c"].use.Rate = members["c"].use.Rate * 60 / 100
	round("a", "b", "c")
	round("c", "b", "a")
	round("c", "b", "a") // c found no headroom until a and b had lowered
	settled(Share{Rate: 20}, "a", "b", "c")

	// a leaves cleanly: its row goes at once.
	members["a"].alive, members["a"].hasRow, members["a"].use = false, false, Share{}
	round("b", "c")
	round("c", "b")
	settled(Share{Rate: 30}, "b", "c")
}

// checkUse asserts the sum of shares in use (and reserved by unexpired rows
// of dead members) is within the smallest live limits.
func checkUse(t *testing.T, members map[string]*member, order []string, now time.Time, when string) {
	t.Helper()
	limit := Limits{Rate: 1e18, Concurrency: 1 << 30}
	var rate float64
	var conc int
	for _, n := range order {
		m := members[n]
		rate += m.use.Rate
		conc += m.use.Concurrency
		if m.alive || (m.hasRow && Live(m.row, now)) {
			limit.Rate = min(limit.Rate, m.limits.Rate)
			limit.Concurrency = min(limit.Concurrency, m.limits.Concurrency)
		}
		if m.hasRow && Live(m.row, now) {
			require.LessOrEqual(t, m.use.Rate, m.row.RateShare+1e-9, "%s: %s uses more than it published", when, n)
			require.LessOrEqual(t, m.use.Concurrency, m.row.ConcurrencyShare, "%s: %s uses more than it published", when, n)
		}
	}
	require.LessOrEqual(t, conc, limit.Concurrency, when)
	// A reload lowers the reloading instance's own share at once; the others
	// follow at their next beat, so until then the old smallest limit holds.
	require.LessOrEqual(t, rate, 100.0+1e-9, when)
}
