package importcheck_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/clock"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/importcheck"
	"github.com/billingd/billingd/internal/store"
	"github.com/stretchr/testify/require"
)

// fakeAccounts answers from maps and counts the calls per id.
type fakeAccounts struct {
	mu        sync.Mutex
	customers map[string]*gateway.Customer
	methods   map[string]*gateway.PaymentMethod
	calls     map[string]int
	fail      map[string][]error // errors returned before the real answer, per id
}

func (f *fakeAccounts) answer(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[id]++
	if errs := f.fail[id]; len(errs) > 0 {
		f.fail[id] = errs[1:]
		return errs[0]
	}
	return nil
}

func (f *fakeAccounts) RetrieveCustomer(_ context.Context, id string) (*gateway.Customer, error) {
	if err := f.answer(id); err != nil {
		return nil, err
	}
	if c := f.customers[id]; c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no such customer: %w", gateway.ErrNotFound)
}

func (f *fakeAccounts) RetrievePaymentMethod(_ context.Context, id string) (*gateway.PaymentMethod, error) {
	if err := f.answer(id); err != nil {
		return nil, err
	}
	if pm := f.methods[id]; pm != nil {
		return pm, nil
	}
	return nil, fmt.Errorf("no such payment method: %w", gateway.ErrNotFound)
}

type retryableErr struct{ retry bool }

func (e retryableErr) Error() string   { return fmt.Sprintf("gateway trouble (retryable %v)", e.retry) }
func (e retryableErr) Retryable() bool { return e.retry }

func newFake() *fakeAccounts {
	return &fakeAccounts{
		customers: map[string]*gateway.Customer{
			"cus_a":    {ID: "cus_a"},
			"cus_b":    {ID: "cus_b"},
			"cus_gone": {ID: "cus_gone", Deleted: true},
		},
		methods: map[string]*gateway.PaymentMethod{
			"pm_a1":       {ID: "pm_a1", Customer: "cus_a"},
			"pm_a2":       {ID: "pm_a2", Customer: "cus_a"},
			"pm_b1":       {ID: "pm_b1", Customer: "cus_b"},
			"pm_detached": {ID: "pm_detached"},
		},
		fail: map[string][]error{},
	}
}

func row(line int, cus, pm string) store.ImportRow {
	return store.ImportRow{Line: line, Reference: fmt.Sprint("ref-", line), Customer: cus, PaymentMethod: pm}
}

func TestCheckNamesEveryBadIDByLineAndColumn(t *testing.T) {
	for _, tc := range []struct {
		name string
		rows []store.ImportRow
		want store.ImportErrors
	}{
		{"all good", []store.ImportRow{row(2, "cus_a", "pm_a1"), row(3, "cus_b", "pm_b1")}, nil},
		{"unknown customer", []store.ImportRow{row(2, "cus_nope", "pm_a1")},
			store.ImportErrors{{Line: 2, Column: "customer", Value: "cus_nope", Message: "the gateway has no such customer"}}},
		{"deleted customer", []store.ImportRow{row(2, "cus_gone", "pm_a1")},
			store.ImportErrors{{Line: 2, Column: "customer", Value: "cus_gone", Message: "the customer was deleted at the gateway"}}},
		{"unknown payment method", []store.ImportRow{row(2, "cus_a", "pm_nope")},
			store.ImportErrors{{Line: 2, Column: "payment_method", Value: "pm_nope", Message: "the gateway has no such payment method"}}},
		{"another customer's payment method", []store.ImportRow{row(2, "cus_a", "pm_a1"), row(3, "cus_a", "pm_b1")},
			store.ImportErrors{{Line: 3, Column: "payment_method", Value: "pm_b1", Message: "the payment method belongs to customer cus_b at the gateway, not to cus_a"}}},
		{"detached payment method", []store.ImportRow{row(4, "cus_a", "pm_detached")},
			store.ImportErrors{{Line: 4, Column: "payment_method", Value: "pm_detached", Message: "the payment method is not attached to any customer at the gateway"}}},
		{"every line that names a bad id is reported", []store.ImportRow{row(2, "cus_nope", "pm_a1"), row(3, "cus_a", "pm_b1"), row(4, "cus_nope", "pm_a2")},
			store.ImportErrors{
				{Line: 2, Column: "customer", Value: "cus_nope", Message: "the gateway has no such customer"},
				{Line: 3, Column: "payment_method", Value: "pm_b1", Message: "the payment method belongs to customer cus_b at the gateway, not to cus_a"},
				{Line: 4, Column: "customer", Value: "cus_nope", Message: "the gateway has no such customer"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := importcheck.Check(context.Background(), newFake(), tc.rows, importcheck.Options{})
			if tc.want == nil {
				require.NoError(t, err)
				require.NotEmpty(t, res.Customers)
				return
			}
			var ie store.ImportErrors
			require.ErrorAs(t, err, &ie)
			require.Equal(t, tc.want, ie)
			require.Empty(t, res.Customers, "nothing is confirmed when the file is rejected")
		})
	}
}

func TestCheckAsksOncePerIDAndSkipsVerifiedOnes(t *testing.T) {
	f := newFake()
	rows := []store.ImportRow{row(2, "cus_a", "pm_a1"), row(3, "cus_a", "pm_a2"), row(4, "cus_a", "pm_a1"), row(5, "cus_b", "pm_b1")}
	res, err := importcheck.Check(context.Background(), f, rows, importcheck.Options{
		Verified: store.Verified{Customers: map[string]bool{"cus_b": true}, PaymentMethods: map[string]bool{"pm_b1": true}},
	})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"cus_a": 1, "pm_a1": 1, "pm_a2": 1}, f.calls)
	require.Equal(t, []string{"cus_a"}, res.Customers)
	require.Equal(t, []string{"pm_a1", "pm_a2"}, res.PaymentMethods)
	require.Equal(t, 3, res.Checked)
}

func TestCheckRetriesUnknownOutcomesAndStopsOnOtherErrors(t *testing.T) {
	t.Run("retryable failures are retried", func(t *testing.T) {
		f := newFake()
		f.fail["cus_a"] = []error{retryableErr{true}, retryableErr{true}}
		clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		_, err := importcheck.Check(context.Background(), f, []store.ImportRow{row(2, "cus_a", "pm_a1")}, importcheck.Options{Clock: clk, RetryWait: time.Second})
		require.NoError(t, err)
		require.Equal(t, 3, f.calls["cus_a"])
	})
	t.Run("retries are bounded", func(t *testing.T) {
		f := newFake()
		f.fail["cus_a"] = []error{retryableErr{true}, retryableErr{true}, retryableErr{true}}
		clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		_, err := importcheck.Check(context.Background(), f, []store.ImportRow{row(2, "cus_a", "pm_a1")}, importcheck.Options{Clock: clk, Retries: 2})
		require.Error(t, err)
		var ie store.ImportErrors
		require.False(t, errors.As(err, &ie), "gateway trouble is not a bad id")
		require.Contains(t, err.Error(), "could not verify customer cus_a")
		require.Equal(t, 3, f.calls["cus_a"])
	})
	t.Run("a definite failure stops the check", func(t *testing.T) {
		f := newFake()
		f.fail["pm_a1"] = []error{retryableErr{false}}
		_, err := importcheck.Check(context.Background(), f, []store.ImportRow{row(2, "cus_a", "pm_a1")}, importcheck.Options{})
		require.ErrorContains(t, err, "could not verify payment method pm_a1")
		require.Equal(t, 1, f.calls["pm_a1"])
	})
}

func TestCheckPrintsProgressForLongFiles(t *testing.T) {
	f := newFake()
	var rows []store.ImportRow
	for i := 0; i < 25; i++ {
		cus := fmt.Sprintf("cus_%02d", i)
		pm := fmt.Sprintf("pm_%02d", i)
		f.customers[cus] = &gateway.Customer{ID: cus}
		f.methods[pm] = &gateway.PaymentMethod{ID: pm, Customer: cus}
		rows = append(rows, row(i+2, cus, pm))
	}
	var out bytes.Buffer
	_, err := importcheck.Check(context.Background(), f, rows, importcheck.Options{Progress: &out, ProgressEvery: 10})
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Equal(t, []string{"verifying 50 gateway id(s)…", "verified 10/50 gateway id(s)", "verified 20/50 gateway id(s)",
		"verified 30/50 gateway id(s)", "verified 40/50 gateway id(s)", "verified 50/50 gateway id(s)"}, lines)

	out.Reset()
	_, err = importcheck.Check(context.Background(), newFake(), []store.ImportRow{row(2, "cus_a", "pm_a1")}, importcheck.Options{Progress: &out, ProgressEvery: 10})
	require.NoError(t, err)
	require.Empty(t, out.String(), "a short file prints no progress")
}
