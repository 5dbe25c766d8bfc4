package ops

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
)

// Compare decides each kind of difference from constructed data: the
// gateway's payment and what the database holds about it.
func TestReconcileCompare(t *testing.T) {
	received := int64(2500)
	pay := func(mut ...func(*gateway.PaymentIntent)) *gateway.PaymentIntent {
		pi := &gateway.PaymentIntent{ID: "pi_1", Status: gateway.IntentSucceeded, Amount: 2500, AmountReceived: &received, Currency: "USD",
			MerchantOrderID: "inv_a", Metadata: map[string]string{"idempotency_key": "inv_a-a2", "attempt": "2", "invoice": "inv_a"}}
		for _, m := range mut {
			m(pi)
		}
		return pi
	}
	attempt := func(status models.AttemptStatus, payment string) *models.ChargeAttempt {
		return &models.ChargeAttempt{ID: 7, InvoiceID: 3, AttemptNo: 2, IdempotencyKey: "inv_a-a2", MerchantOrderID: "inv_a",
			Amount: 2500, Currency: "USD", Status: status, PaymentIntentID: payment}
	}
	invoice := func(status models.InvoiceStatus, paidBy string) *models.Invoice {
		return &models.Invoice{ID: 3, PublicID: "inv_a", Amount: 2500, Currency: "USD", Status: status, PaymentIntentID: paidBy}
	}
	for _, tc := range []struct {
		name string
		pi   *gateway.PaymentIntent
		held Held
		want string
	}{
		{"recorded: attempt succeeded with it, invoice paid by it", pay(),
			Held{Attempt: attempt(models.AttemptSucceeded, "pi_1"), Invoice: invoice(models.InvoicePaid, "pi_1")}, ""},
		{"a second success already recorded for refund", pay(),
			Held{Attempt: attempt(models.AttemptSucceeded, "pi_1"), Invoice: invoice(models.InvoicePaid, "pi_0")}, ""},
		{"attempt unknown", pay(), Held{Attempt: attempt(models.AttemptUnknown, ""), Invoice: invoice(models.InvoiceOpen, "")}, DiffUnsettled},
		{"invoice in dunning after a decline", pay(), Held{Attempt: attempt(models.AttemptDeclined, "pi_1"), Invoice: invoice(models.InvoiceOpen, "")}, DiffUnsettled},
		{"invoice uncollectible", pay(), Held{Attempt: attempt(models.AttemptDeclined, "pi_1"), Invoice: invoice(models.InvoiceUncollectible, "")}, DiffUnsettled},
		{"paid by another payment, this attempt not settled", pay(),
			Held{Attempt: attempt(models.AttemptRequiresAction, "pi_1"), Invoice: invoice(models.InvoicePaid, "pi_0")}, DiffUnsettled},
		{"needs review, the amounts agree: the success settles it", pay(),
			Held{Attempt: attempt(models.AttemptNeedsReview, ""), Invoice: invoice(models.InvoiceOpen, "")}, DiffUnsettled},
		{"needs review for another amount: left to a person", pay(func(p *gateway.PaymentIntent) { p.Amount = 2400 }),
			Held{Attempt: attempt(models.AttemptNeedsReview, "pi_1"), Invoice: invoice(models.InvoiceOpen, "")}, DiffUnderReview},
		{"paid, but the gateway took another amount", pay(func(p *gateway.PaymentIntent) { r := int64(100); p.AmountReceived = &r }),
			Held{Attempt: attempt(models.AttemptSucceeded, "pi_1"), Invoice: invoice(models.InvoicePaid, "pi_1")}, DiffAmount},
		{"paid, but in another currency", pay(func(p *gateway.PaymentIntent) { p.Currency = "EUR" }),
			Held{Attempt: attempt(models.AttemptSucceeded, "pi_1"), Invoice: invoice(models.InvoicePaid, "pi_1")}, DiffAmount},
		{"the invoice exists, its attempt was lost", pay(), Held{Invoice: invoice(models.InvoiceOpen, "")}, DiffLostAttempt},
		{"the invoice exists, its attempt was lost, another amount", pay(func(p *gateway.PaymentIntent) { p.Amount = 999; p.AmountReceived = nil }),
			Held{Invoice: invoice(models.InvoiceOpen, "")}, DiffAmount},
		{"the invoice was lost, its period is known", pay(), Held{Period: true, Amount: 2500, Currency: "USD"}, DiffLostInvoice},
		{"the invoice was lost, the subscription asks for another currency", pay(), Held{Period: true, Amount: 2500, Currency: "EUR"}, DiffAmount},
		{"attempt unknown, another amount", pay(func(p *gateway.PaymentIntent) { p.Amount = 2400 }),
			Held{Attempt: attempt(models.AttemptUnknown, ""), Invoice: invoice(models.InvoiceOpen, "")}, DiffAmount},
		{"billingd's metadata, but no invoice or period", pay(), Held{}, DiffUnplaced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Compare(tc.pi, tc.held))
		})
	}
}

func TestReconcilePaymentFields(t *testing.T) {
	for _, tc := range []struct {
		meta    map[string]string
		order   string
		attempt int
	}{
		{map[string]string{"idempotency_key": "inv_a-a3", "attempt": "3"}, "", 3},
		{map[string]string{"idempotency_key": "inv_a-a4"}, "", 4},
		{map[string]string{"idempotency_key": "inv_a-a4", "attempt": "x"}, "", 4},
		{map[string]string{"idempotency_key": "inv_a-p1"}, "", 0},
		{map[string]string{"idempotency_key": "k", "invoice": "inv_m"}, "inv_m", 0},
	} {
		pi := &gateway.PaymentIntent{Metadata: tc.meta}
		require.Equal(t, tc.attempt, attemptNoOf(pi), "%v", tc.meta)
		require.Equal(t, tc.order, orderOf(pi), "%v", tc.meta)
	}
	require.Equal(t, "inv_z", orderOf(&gateway.PaymentIntent{MerchantOrderID: "inv_z", Metadata: map[string]string{"invoice": "inv_m"}}))
	require.Empty(t, ourKey(&gateway.PaymentIntent{Metadata: map[string]string{"order": "x"}}), "not billingd's")
}
