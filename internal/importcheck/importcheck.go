// Package importcheck verifies a subscription import's gateway ids with the
// gateway before anything is written: every new customer exists, every new
// payment method exists and belongs to the customer of the row that names it.
//
// An id billingd never verified that the gateway later calls unknown is
// billingd's own data error, for a human; a verified one that disappears is the
// customer's doing. Checking at import turns the first kind into an import
// error, named by line and column, instead of a charge that fails weeks later.
// Each distinct id is retrieved once, however many rows name it, within the
// gateway's rate limit.
package importcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/store"
	"golang.org/x/time/rate"
)

// Gateway is the part of the gateway the check calls: one read per id.
type Gateway interface {
	RetrieveCustomer(ctx context.Context, id string) (*gateway.Customer, error)
	RetrievePaymentMethod(ctx context.Context, id string) (*gateway.PaymentMethod, error)
}

// SeriesReader reads a payment: a gateway that has it (every provider client
// does) also checks each new card's previous_payment_id — that the payment
// exists, succeeded, and was made with that row's card by that row's
// customer — so a wrong one is an import error, not a charge held for review.
type SeriesReader interface {
	RetrievePaymentIntent(ctx context.Context, id string) gateway.Result
}

// Options tune a check.
type Options struct {
	// Verified lists ids the gateway confirmed before (store.VerifiedIDs):
	// they are not retrieved again.
	Verified store.Verified
	// Limiter paces the calls (gateway.rate_limit); nil means unlimited.
	Limiter *rate.Limiter
	// Workers is how many calls may be in flight at once (default 4).
	Workers int
	// Retries is how often a call whose outcome is unknown (timeout, 429,
	// 5xx) is tried again before the check gives up (default 3).
	Retries int
	// RetryWait is the first wait before such a retry; it doubles each time
	// (default 1s).
	RetryWait time.Duration
	// Clock paces the retries (default the real clock).
	Clock clock.Clock
	// Progress, when set, receives a line every ProgressEvery ids checked, for
	// files long enough to take a while.
	Progress io.Writer
	// ProgressEvery is the number of ids between progress lines (default 100);
	// a file with fewer ids to check prints none.
	ProgressEvery int
}

// Result names the ids the gateway confirmed in this check, for
// store.MarkVerified once the import is written.
type Result struct {
	Customers      []string
	PaymentMethods []string
	// Cards is what the gateway said about each card it was asked about
	// (brand, last 4, expiry), by payment method id, for
	// store.RecordCardDetails once the import is written.
	Cards map[string]store.SavedCard
	// Checked is the number of gateway calls made.
	Checked int
}

// Check verifies the new ids of rows. It returns store.ImportErrors listing
// every bad id by line and column when any is bad, and another error when the
// gateway could not be asked (then nothing is known about the ids).
func Check(ctx context.Context, gw Gateway, rows []store.ImportRow, opts Options) (Result, error) {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Retries <= 0 {
		opts.Retries = 3
	}
	if opts.RetryWait <= 0 {
		opts.RetryWait = time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 100
	}

	// The distinct ids to ask about, in file order.
	var jobs []job
	seen := map[job]bool{}
	_, readsSeries := gw.(SeriesReader)
	for _, r := range rows {
		candidates := []job{{kind: kindCustomer, id: r.Customer}, {kind: kindPaymentMethod, id: r.PaymentMethod}}
		if readsSeries && r.PreviousPaymentID != "" && !opts.Verified.PaymentMethods[r.PaymentMethod] {
			candidates = append(candidates, job{kind: kindSeries, id: r.PreviousPaymentID})
		}
		for _, j := range candidates {
			if j.id == "" || seen[j] || j.verified(opts.Verified) {
				continue
			}
			seen[j] = true
			jobs = append(jobs, j)
		}
	}

	answers, err := fetch(ctx, gw, jobs, opts)
	if err != nil {
		return Result{}, err
	}

	var problems store.ImportErrors
	for _, r := range rows {
		customerOK := true
		if a, ok := answers[job{kind: kindCustomer, id: r.Customer}]; ok {
			switch {
			case a.missing:
				problems = append(problems, store.RowError{Line: r.Line, Column: "customer", Value: r.Customer, Message: "the gateway has no such customer"})
				customerOK = false
			case a.customer.Deleted:
				problems = append(problems, store.RowError{Line: r.Line, Column: "customer", Value: r.Customer, Message: "the customer was deleted at the gateway"})
				customerOK = false
			}
		}
		a, ok := answers[job{kind: kindPaymentMethod, id: r.PaymentMethod}]
		if !ok {
			continue
		}
		switch {
		case a.missing:
			problems = append(problems, store.RowError{Line: r.Line, Column: "payment_method", Value: r.PaymentMethod, Message: "the gateway has no such payment method"})
		case a.paymentMethod.Customer == "":
			problems = append(problems, store.RowError{Line: r.Line, Column: "payment_method", Value: r.PaymentMethod, Message: "the payment method is not attached to any customer at the gateway"})
		case customerOK && a.paymentMethod.Customer != r.Customer:
			problems = append(problems, store.RowError{Line: r.Line, Column: "payment_method", Value: r.PaymentMethod,
				Message: fmt.Sprintf("the payment method belongs to customer %s at the gateway, not to %s", a.paymentMethod.Customer, r.Customer)})
		}
		if s, ok := answers[job{kind: kindSeries, id: r.PreviousPaymentID}]; ok && r.PreviousPaymentID != "" {
			if msg := seriesProblem(s, r); msg != "" {
				problems = append(problems, store.RowError{Line: r.Line, Column: "previous_payment_id", Value: r.PreviousPaymentID, Message: msg})
			}
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return Result{}, problems
	}

	res := Result{Checked: len(jobs)}
	for _, j := range jobs {
		switch j.kind {
		case kindCustomer:
			res.Customers = append(res.Customers, j.id)
		case kindPaymentMethod:
			res.PaymentMethods = append(res.PaymentMethods, j.id)
			if a := answers[j]; a.paymentMethod != nil && a.paymentMethod.Card != nil {
				if res.Cards == nil {
					res.Cards = map[string]store.SavedCard{}
				}
				c := a.paymentMethod.Card
				res.Cards[j.id] = store.SavedCard{Brand: c.Brand, Last4: c.Last4, ExpMonth: c.ExpMonth, ExpYear: c.ExpYear}
			}
		}
	}
	return res, nil
}

// seriesProblem says what is wrong with a row's previous_payment_id, "" if
// nothing: the series of a card starts with a payment that succeeded with
// that card, for that customer.
func seriesProblem(a answer, r store.ImportRow) string {
	switch {
	case a.missing:
		return "the gateway has no such payment"
	case a.payment.PaymentMethod != "" && a.payment.PaymentMethod != r.PaymentMethod:
		return fmt.Sprintf("is a payment with another card (%s), not with this row's %s", a.payment.PaymentMethod, r.PaymentMethod)
	case a.payment.Customer != "" && a.payment.Customer != r.Customer:
		return fmt.Sprintf("is a payment of customer %s at the gateway, not of %s", a.payment.Customer, r.Customer)
	case a.payment.Status != gateway.IntentSucceeded:
		return fmt.Sprintf("did not succeed (status %s): a card's recurring series starts with a payment that did", a.payment.Status)
	}
	return ""
}

type kind int

const (
	kindCustomer kind = iota
	kindPaymentMethod
	kindSeries // a card's previous_payment_id
)

type job struct {
	kind kind
	id   string
}

func (j job) verified(v store.Verified) bool {
	if j.kind == kindCustomer {
		return v.Customers[j.id]
	}
	return v.PaymentMethods[j.id]
}

// answer is what the gateway said about one id.
type answer struct {
	missing       bool
	customer      *gateway.Customer
	paymentMethod *gateway.PaymentMethod
	payment       *gateway.PaymentIntent
}

// fetch retrieves every job's object with opts.Workers calls in flight. The
// first failure that is not "no such object" stops the check.
func fetch(ctx context.Context, gw Gateway, jobs []job, opts Options) (map[job]answer, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		answers  = make(map[job]answer, len(jobs))
		firstErr error
		done     int
	)
	progress := opts.Progress != nil && len(jobs) > opts.ProgressEvery
	if progress {
		fmt.Fprintf(opts.Progress, "verifying %d gateway id(s)…\n", len(jobs))
	}
	work := make(chan job)
	var wg sync.WaitGroup
	for w := 0; w < min(opts.Workers, max(len(jobs), 1)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				a, err := ask(ctx, gw, j, opts)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
				} else {
					answers[j] = a
					done++
					if progress && (done%opts.ProgressEvery == 0 || done == len(jobs)) {
						fmt.Fprintf(opts.Progress, "verified %d/%d gateway id(s)\n", done, len(jobs))
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, j := range jobs {
		select {
		case work <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return answers, nil
}

// ask retrieves one object, retrying a call whose outcome is unknown.
func ask(ctx context.Context, gw Gateway, j job, opts Options) (answer, error) {
	wait := opts.RetryWait
	for try := 0; ; try++ {
		if opts.Limiter != nil {
			if err := opts.Limiter.Wait(ctx); err != nil {
				return answer{}, err
			}
		}
		var (
			a   answer
			err error
		)
		switch j.kind {
		case kindCustomer:
			a.customer, err = gw.RetrieveCustomer(ctx, j.id)
		case kindPaymentMethod:
			a.paymentMethod, err = gw.RetrievePaymentMethod(ctx, j.id)
		case kindSeries:
			a.payment, err = readPayment(ctx, gw.(SeriesReader), j.id)
		}
		switch {
		case err == nil && (a.customer != nil || a.paymentMethod != nil || a.payment != nil):
			return a, nil
		case err == nil:
			return answer{}, fmt.Errorf("importcheck: %s: the gateway answered without an object", j)
		case errors.Is(err, gateway.ErrNotFound):
			return answer{missing: true}, nil
		case !retryable(err) || try >= opts.Retries || ctx.Err() != nil:
			return answer{}, fmt.Errorf("importcheck: could not verify %s with the gateway: %w", j, err)
		}
		if err := opts.Clock.Sleep(ctx, wait); err != nil {
			return answer{}, err
		}
		wait *= 2
	}
}

func (j job) String() string {
	switch j.kind {
	case kindCustomer:
		return "customer " + j.id
	case kindSeries:
		return "payment " + j.id
	}
	return "payment method " + j.id
}

// readPayment reads a payment, with the same errors as the other reads: one
// for which errors.Is(err, gateway.ErrNotFound) holds, or a retryable one
// when the outcome is unknown.
func readPayment(ctx context.Context, gw SeriesReader, id string) (*gateway.PaymentIntent, error) {
	res := gw.RetrievePaymentIntent(ctx, id)
	switch {
	case res.Intent != nil && res.Kind != gateway.Transient && res.Kind != gateway.Invalid:
		return res.Intent, nil
	case res.Kind == gateway.Transient:
		return nil, unknownRead{res.Err}
	case res.Err != nil:
		return nil, res.Err
	}
	return nil, fmt.Errorf("payment %s: the gateway answered %s", id, res.Kind)
}

// unknownRead is a read whose outcome is unknown: asking again may help.
type unknownRead struct{ err error }

func (u unknownRead) Error() string   { return fmt.Sprintf("%v", u.err) }
func (u unknownRead) Unwrap() error   { return u.err }
func (u unknownRead) Retryable() bool { return true }

// retryable reports whether the provider says the call's outcome is unknown
// (a timeout, a 429, a 5xx), so asking again may get an answer.
func retryable(err error) bool {
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}
