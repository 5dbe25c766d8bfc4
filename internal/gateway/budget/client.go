package budget

import (
	"context"

	"github.com/billingd/billingd/internal/gateway"
)

// Full is everything billingd asks of a provider's client (the daemon's
// GatewayClient): the charge path, refunds, the hosted card-update page and
// the account reads.
type Full interface {
	gateway.Gateway
	gateway.Refunds
	gateway.SetupSessions
	gateway.Accounts
}

// Wrap returns inner with every call taking from b first: a slot of the
// concurrency share for the call's duration and a token of the rate share
// for each of its HTTP requests. It keeps gateway.PaymentLister when inner
// has it. Nothing in a daemon holds the unwrapped client, so no gateway call
// can bypass the budget.
func Wrap(inner Full, b *Budget) Full {
	c := &Client{inner: inner, b: b}
	if l, ok := inner.(gateway.PaymentLister); ok {
		return &listingClient{Client: c, lister: l}
	}
	return c
}

// Client is a gateway client whose calls take from a Budget.
type Client struct {
	inner Full
	b     *Budget
}

// result runs a call that answers with a gateway.Result; a context that
// ended while the call waited for its turn is a transient result, nothing
// sent.
func (c *Client) result(ctx context.Context, call func(context.Context) gateway.Result) gateway.Result {
	ctx, done, err := c.b.begin(ctx)
	if err != nil {
		return gateway.Result{Kind: gateway.Transient, Err: err}
	}
	defer done()
	return call(ctx)
}

// do runs a call that answers with an error.
func do[T any](c *Client, ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	ctx, done, err := c.b.begin(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	defer done()
	return call(ctx)
}

// CreatePaymentIntent implements gateway.Gateway.
func (c *Client) CreatePaymentIntent(ctx context.Context, req gateway.PaymentIntentRequest) gateway.Result {
	return c.result(ctx, func(ctx context.Context) gateway.Result { return c.inner.CreatePaymentIntent(ctx, req) })
}

// RetrievePaymentIntent implements gateway.Gateway.
func (c *Client) RetrievePaymentIntent(ctx context.Context, id string) gateway.Result {
	return c.result(ctx, func(ctx context.Context) gateway.Result { return c.inner.RetrievePaymentIntent(ctx, id) })
}

// ConfirmPaymentIntent implements gateway.Gateway.
func (c *Client) ConfirmPaymentIntent(ctx context.Context, id string, req gateway.ConfirmRequest) gateway.Result {
	return c.result(ctx, func(ctx context.Context) gateway.Result { return c.inner.ConfirmPaymentIntent(ctx, id, req) })
}

// CancelPaymentIntent implements gateway.Gateway.
func (c *Client) CancelPaymentIntent(ctx context.Context, id string, idempotencyKey string) gateway.Result {
	return c.result(ctx, func(ctx context.Context) gateway.Result { return c.inner.CancelPaymentIntent(ctx, id, idempotencyKey) })
}

// SearchPaymentIntentsByOrder implements gateway.Gateway.
func (c *Client) SearchPaymentIntentsByOrder(ctx context.Context, merchantOrderID string) ([]gateway.PaymentIntent, error) {
	return do(c, ctx, func(ctx context.Context) ([]gateway.PaymentIntent, error) {
		return c.inner.SearchPaymentIntentsByOrder(ctx, merchantOrderID)
	})
}

// KeyPolicy implements gateway.Gateway; it sends nothing.
func (c *Client) KeyPolicy() gateway.KeyPolicy { return c.inner.KeyPolicy() }

// CreateRefund implements gateway.Refunds.
func (c *Client) CreateRefund(ctx context.Context, req gateway.RefundRequest) gateway.Result {
	return c.result(ctx, func(ctx context.Context) gateway.Result { return c.inner.CreateRefund(ctx, req) })
}

// RetrieveRefund implements gateway.Refunds.
func (c *Client) RetrieveRefund(ctx context.Context, paymentIntent, id string) gateway.Result {
	return c.result(ctx, func(ctx context.Context) gateway.Result { return c.inner.RetrieveRefund(ctx, paymentIntent, id) })
}

// CreateSetupCheckoutSession implements gateway.SetupSessions.
func (c *Client) CreateSetupCheckoutSession(ctx context.Context, req gateway.SetupSessionRequest) (*gateway.CheckoutSession, error) {
	return do(c, ctx, func(ctx context.Context) (*gateway.CheckoutSession, error) {
		return c.inner.CreateSetupCheckoutSession(ctx, req)
	})
}

// RetrieveCustomer implements gateway.Accounts.
func (c *Client) RetrieveCustomer(ctx context.Context, id string) (*gateway.Customer, error) {
	return do(c, ctx, func(ctx context.Context) (*gateway.Customer, error) { return c.inner.RetrieveCustomer(ctx, id) })
}

// RetrievePaymentMethod implements gateway.Accounts.
func (c *Client) RetrievePaymentMethod(ctx context.Context, id string) (*gateway.PaymentMethod, error) {
	return do(c, ctx, func(ctx context.Context) (*gateway.PaymentMethod, error) {
		return c.inner.RetrievePaymentMethod(ctx, id)
	})
}

// listingClient is a Client whose provider lists payments.
type listingClient struct {
	*Client
	lister gateway.PaymentLister
}

// ListPaymentIntents implements gateway.PaymentLister.
func (c *listingClient) ListPaymentIntents(ctx context.Context, req gateway.PaymentListRequest) (gateway.PaymentPage, error) {
	return do(c.Client, ctx, func(ctx context.Context) (gateway.PaymentPage, error) { return c.lister.ListPaymentIntents(ctx, req) })
}
