package period

import (
	"errors"
	"fmt"
	"sync"
	"time"
	_ "time/tzdata" // a host without a zone database still loads every subscription's zone
)

// zones caches loaded zones by name. The billing pass builds a Recurrence for
// every due subscription on every page, and time.LoadLocation parses the zone's
// file each time it is called.
var zones sync.Map // name → *time.Location

// LoadZone returns the IANA time zone a subscription's calendar is read in.
// Unlike time.LoadLocation it refuses "" (which LoadLocation would take for UTC:
// a missing zone must never silently become one) and "Local" (the host's zone,
// which differs from one machine to the next, so two instances would disagree
// on a period's start).
func LoadZone(name string) (*time.Location, error) {
	if v, ok := zones.Load(name); ok {
		return v.(*time.Location), nil
	}
	switch name {
	case "":
		return nil, errors.New("time zone is required (an IANA name such as UTC or Europe/Berlin)")
	case "Local":
		return nil, errors.New(`time zone "Local" depends on the host; use an IANA name such as UTC or Europe/Berlin`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; use an IANA name such as UTC or Europe/Berlin", name)
	}
	zones.Store(name, loc)
	return loc, nil
}

// New builds the Recurrence of a subscription from its stored terms: the anchor
// instant, the interval as written in the CSV and the database ("day", "week",
// "month", "year"), the interval count and the subscription's own zone name. The
// error names the CSV column at fault, as Validate does. Every caller that reads
// a stored subscription (the billing pass, the invariant checker) goes through
// New, so they cannot disagree on its calendar.
func New(anchor time.Time, interval string, count int, zone string) (Recurrence, error) {
	iv, err := ParseInterval(interval)
	if err != nil {
		return Recurrence{}, fmt.Errorf("interval: %w", err)
	}
	loc, err := LoadZone(zone)
	if err != nil {
		return Recurrence{}, fmt.Errorf("timezone: %w", err)
	}
	r := Recurrence{Anchor: anchor, Interval: iv, Count: count, Location: loc}
	if err := r.Validate(); err != nil {
		return Recurrence{}, err
	}
	return r, nil
}
