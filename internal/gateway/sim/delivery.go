package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Delivery shapes webhook delivery so that a receiver can be tested against what
// a real gateway does to it: the same event more than once, events out of order,
// forged or replayed signatures, and deliveries that only arrive on a retry.
//
// Every decision is drawn when the event is generated, from a random source
// seeded from Options.Seed that is separate from the API fault source: enabling a
// webhook mode never changes which API requests are faulted, and the same seed
// and request order give the same decisions. Each event draws a fixed amount from
// that source whatever the settings, so changing one probability does not
// reshuffle the other decisions.
//
// Delivery stays at-least-once whatever the modes: a spoiled attempt (lost, badly
// signed or stale) is always followed by another one, and spoiled attempts do not
// use up the retry schedule, so an event is given up only when the endpoint fails
// every correctly signed attempt of the schedule.
//
// The zero value delivers each event once, promptly and correctly signed.
type Delivery struct {
	// Workers is how many deliveries may be in flight at once. Default 4. With more
	// than one worker, events can arrive out of order, as they do from WooshPay.
	// It cannot change at runtime.
	Workers int
	// Disabled turns delivery off: events are still generated and recorded (Events,
	// Stats.Events) but none is queued, so a test of the reconciler can rely on
	// webhooks never coming. Deliveries queued before it was set still go out;
	// turning delivery back on does not send the events generated meanwhile.
	Disabled bool
	// Duplicates is the probability that an event is delivered more than once:
	// between 2 and MaxCopies copies in all, each a separate delivery of the same
	// event id and body, signed on its own and subject to every other mode.
	Duplicates float64
	// MaxCopies bounds the copies of a duplicated event. 0 means 3.
	MaxCopies int
	// Delay holds every delivery back this long before its first try.
	Delay time.Duration
	// MaxDelay adds a random wait in [0, MaxDelay) before each delivery's first
	// try, so events (and copies of one event) arrive in a different order than
	// they were generated. 0 keeps generation order, up to what Workers allows.
	MaxDelay time.Duration
	// BadSignature is the share of deliveries whose first attempt is signed with a
	// wrong secret, as a forger's would be; the receiver must reject it, and the
	// following attempt is signed correctly.
	BadSignature float64
	// StaleTimestamp is the share of deliveries whose first attempt (after a bad
	// signature, if both are drawn) is correctly signed for a timestamp StaleAge in
	// the past, as a replayed capture would be; the receiver must reject it, and
	// the following attempt carries a fresh timestamp.
	StaleTimestamp float64
	// StaleAge is how old a stale timestamp is. 0 means 10 minutes, twice the
	// usual 300 s tolerance.
	StaleAge time.Duration
	// Lose is the share of deliveries whose first attempt is never sent, as if it
	// were lost in the network: it counts as a failed attempt and the event only
	// arrives through the retry schedule.
	Lose float64
}

const (
	defaultMaxCopies = 3
	maxMaxCopies     = 100
	defaultStaleAge  = 10 * time.Minute
)

func (d Delivery) withDefaults() Delivery {
	if d.Workers <= 0 {
		d.Workers = defaultWebhookWorkers
	}
	if d.MaxCopies <= 0 {
		d.MaxCopies = defaultMaxCopies
	}
	if d.StaleAge <= 0 {
		d.StaleAge = defaultStaleAge
	}
	return d
}

// Delivery fields, as named in validation errors and in the JSON of
// PUT /_sim/webhooks.
const (
	FieldWebhookWorkers        FaultField = "workers"
	FieldWebhookDuplicates     FaultField = "duplicates"
	FieldWebhookMaxCopies      FaultField = "max_copies"
	FieldWebhookDelay          FaultField = "delay"
	FieldWebhookMaxDelay       FaultField = "max_delay"
	FieldWebhookBadSignature   FaultField = "bad_signature"
	FieldWebhookStaleTimestamp FaultField = "stale_timestamp"
	FieldWebhookStaleAge       FaultField = "stale_age"
	FieldWebhookLose           FaultField = "lose"
)

// Validate checks that every probability is within [0, 1], that MaxCopies is 0
// (the default) or between 2 and 100 and that no count or duration is negative.
// The modes are independent, so their probabilities need not sum to at most 1.
func (d Delivery) Validate() error {
	probs := []struct {
		field FaultField
		v     float64
	}{
		{FieldWebhookDuplicates, d.Duplicates},
		{FieldWebhookBadSignature, d.BadSignature},
		{FieldWebhookStaleTimestamp, d.StaleTimestamp},
		{FieldWebhookLose, d.Lose},
	}
	for _, p := range probs {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			return &FaultError{p.field, fmt.Sprintf("probability must be between 0 and 1, got %v", p.v)}
		}
	}
	if d.Workers < 0 {
		return &FaultError{FieldWebhookWorkers, "must not be negative"}
	}
	if d.MaxCopies != 0 && (d.MaxCopies < 2 || d.MaxCopies > maxMaxCopies) {
		return &FaultError{FieldWebhookMaxCopies, fmt.Sprintf("must be between 2 and %d (or 0 for %d), got %d", maxMaxCopies, defaultMaxCopies, d.MaxCopies)}
	}
	durs := []struct {
		field FaultField
		v     time.Duration
	}{
		{FieldWebhookDelay, d.Delay},
		{FieldWebhookMaxDelay, d.MaxDelay},
		{FieldWebhookStaleAge, d.StaleAge},
	}
	for _, p := range durs {
		if p.v < 0 {
			return &FaultError{p.field, "must not be negative"}
		}
	}
	return nil
}

// deliveryJSON is Delivery on the wire of GET/PUT /_sim/webhooks. Enabled is the
// positive form of Disabled, and absent means true, so that a PUT setting some
// mode does not turn delivery off by omission.
type deliveryJSON struct {
	Enabled        *bool        `json:"enabled,omitempty"`
	Workers        int          `json:"workers"`
	Duplicates     float64      `json:"duplicates"`
	MaxCopies      int          `json:"max_copies"`
	Delay          jsonDuration `json:"delay"`
	MaxDelay       jsonDuration `json:"max_delay"`
	BadSignature   float64      `json:"bad_signature"`
	StaleTimestamp float64      `json:"stale_timestamp"`
	StaleAge       jsonDuration `json:"stale_age"`
	Lose           float64      `json:"lose"`
}

// MarshalJSON writes durations as Go duration strings and Disabled as
// "enabled", the way the control endpoint reads them.
func (d Delivery) MarshalJSON() ([]byte, error) {
	enabled := !d.Disabled
	return json.Marshal(deliveryJSON{
		Enabled: &enabled, Workers: d.Workers, Duplicates: d.Duplicates, MaxCopies: d.MaxCopies,
		Delay: jsonDuration(d.Delay), MaxDelay: jsonDuration(d.MaxDelay),
		BadSignature: d.BadSignature, StaleTimestamp: d.StaleTimestamp,
		StaleAge: jsonDuration(d.StaleAge), Lose: d.Lose,
	})
}

// UnmarshalJSON accepts durations as Go duration strings or integer nanoseconds
// and a missing "enabled" as true, so
// `curl -X PUT -d '{"duplicates":0.2,"max_delay":"500ms"}'` works.
func (d *Delivery) UnmarshalJSON(b []byte) error {
	var j deliveryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*d = j.delivery()
	return nil
}

func (j deliveryJSON) delivery() Delivery {
	return Delivery{
		Workers: j.Workers, Disabled: j.Enabled != nil && !*j.Enabled,
		Duplicates: j.Duplicates, MaxCopies: j.MaxCopies,
		Delay: time.Duration(j.Delay), MaxDelay: time.Duration(j.MaxDelay),
		BadSignature: j.BadSignature, StaleTimestamp: j.StaleTimestamp,
		StaleAge: time.Duration(j.StaleAge), Lose: j.Lose,
	}
}

// spoil is what is wrong with one delivery attempt.
type spoil uint8

const (
	spoilNone         spoil = iota
	spoilLost               // not sent at all
	spoilBadSignature       // signed with a wrong secret
	spoilStale              // correctly signed, for a timestamp outside tolerance
)

func (sp spoil) String() string {
	switch sp {
	case spoilLost:
		return "lost"
	case spoilBadSignature:
		return "bad signature"
	case spoilStale:
		return "stale timestamp"
	}
	return "correct"
}

// delivery is one copy of an event on its way to the endpoint, with the
// decisions drawn for it and its progress through retries. A delivery is owned by
// whichever worker sent it last, or by the pipeline while queued or waiting.
type delivery struct {
	ev       Event
	copy     int           // 0 for the original, 1.. for duplicates
	wait     time.Duration // before the first try
	spoils   []spoil       // how the first attempts are spoiled, in order
	staleAge time.Duration
	attempts int // every attempt, spoiled ones included
	failures int // correctly signed attempts the endpoint did not acknowledge
}

// planEvent draws every decision for one event from r and returns its
// deliveries. It always draws the same amount for the same MaxCopies and copy
// count, whatever the probabilities, so that settings only change the decisions
// they govern.
func planEvent(r *rand.Rand, d Delivery, ev Event) []*delivery {
	dup := r.Float64()
	extra := r.IntN(max(d.MaxCopies, 2) - 1) // 0 .. MaxCopies-2
	copies := 1
	if dup < d.Duplicates {
		copies = 2 + extra
	}
	ds := make([]*delivery, copies)
	for i := range ds {
		delayDraw, loseDraw, badDraw, staleDraw := r.Float64(), r.Float64(), r.Float64(), r.Float64()
		x := &delivery{ev: ev, copy: i, wait: max(d.Delay, 0), staleAge: d.StaleAge}
		if d.MaxDelay > 0 {
			x.wait += time.Duration(delayDraw * float64(d.MaxDelay))
		}
		// A lost attempt comes first: it models the network, the other two the
		// content of a POST that did arrive.
		if loseDraw < d.Lose {
			x.spoils = append(x.spoils, spoilLost)
		}
		if badDraw < d.BadSignature {
			x.spoils = append(x.spoils, spoilBadSignature)
		}
		if staleDraw < d.StaleTimestamp {
			x.spoils = append(x.spoils, spoilStale)
		}
		ds[i] = x
	}
	return ds
}
