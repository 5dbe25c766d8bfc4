package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/ops"
	"github.com/billingd/billingd/internal/store/storetest"
)

// Test cards of the simulator the event tests charge.
const (
	cardPays     = "4242424242424242"
	cardDeclines = "4000000000009995" // insufficient_funds: soft, every retry declines too
)

var eventActor = ops.Actor{Name: "events-test", Via: models.ViaCLI}

// eventsOn configures the bundle's events.url to sink.
func eventsOn(sink *eventSink, more ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Events.URL = sink.srv.URL + "/hooks"
		c.Events.Secret = config.Secret(testEventsSecret)
		for _, f := range more {
			f(c)
		}
	}
}

// seedSub saves a card of number for a new customer and imports subscription
// ref on it, anchored now (its first period is due at once).
func seedSub(t *testing.T, b *daemontest.Bundle, ref, number string) models.Subscription {
	t.Helper()
	cus, pm := b.SaveCard(t, number)
	b.Seed(t, storetest.Subscription{Reference: ref, Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Anchor: b.Clock.Now()})
	return subscriptionByRef(t, b, ref)
}

// lastEventID is the id of the newest event (0 when there is none): a test
// reads the events an action wrote as those after it.
func lastEventID(t *testing.T, b *daemontest.Bundle) int64 {
	t.Helper()
	var id int64
	require.NoError(t, b.Store.DB().Raw(`SELECT COALESCE(MAX(id), 0) FROM events`).Scan(&id).Error)
	return id
}

// eventsAfter lists the events written after id, oldest first.
func eventsAfter(t *testing.T, b *daemontest.Bundle, id int64) []models.Event {
	t.Helper()
	var out []models.Event
	require.NoError(t, b.Store.DB().Where("id > ?", id).Order("id").Find(&out).Error)
	return out
}

// onlyCaseOf is the subscription's one dunning case.
func onlyCaseOf(t *testing.T, b *daemontest.Bundle, subID int64) models.DunningCase {
	t.Helper()
	var cs []models.DunningCase
	require.NoError(t, b.Store.DB().Where("subscription_id = ?", subID).Find(&cs).Error)
	require.Len(t, cs, 1)
	return cs[0]
}

// emitCase drives one transition of the event catalogue through the daemon
// or the operator's actions: prepare brings a subscription to just before it
// (nothing of typ may be emitted after prepare), act makes it and returns the
// object the one event must be about.
type emitCase struct {
	name      string
	typ       models.EventType
	provider  string
	mail      bool // the customer's emails are delivered (a case follows a link)
	configure func(*config.Config)
	prepare   func(t *testing.T, b *daemontest.Bundle) models.Subscription
	act       func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) (objectID int64)
	// check looks at the one event beyond its object (optional).
	check func(t *testing.T, b *daemontest.Bundle, ev models.Event)
}

// inDunning seeds a subscription on the declining card and bills it: its
// first invoice is in dunning and the subscription past_due.
func inDunning(t *testing.T, b *daemontest.Bundle) models.Subscription {
	sub := seedSub(t, b, "dunned", cardDeclines)
	b.Run(t, 0, 0)
	sub = subscriptionByRef(t, b, "dunned")
	require.Equal(t, models.SubscriptionPastDue, sub.Status)
	return sub
}

// paid seeds a subscription on a card that pays and bills it.
func paid(t *testing.T, b *daemontest.Bundle) models.Subscription {
	sub := seedSub(t, b, "paying", cardPays)
	b.Run(t, 0, 0)
	require.Equal(t, models.InvoicePaid, invoicesOf(t, b, sub.ID)[0].Status)
	return sub
}

func fresh(t *testing.T, b *daemontest.Bundle) models.Subscription {
	return seedSub(t, b, "fresh", cardPays)
}

// exhaust runs the default dunning schedule (1, 3, 5, 7 days) out.
func exhaust(t *testing.T, b *daemontest.Bundle, _ models.Subscription) {
	b.Run(t, 17*24*time.Hour, 12*time.Hour)
}

func firstInvoice(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
	return invoicesOf(t, b, sub.ID)[0].ID
}

// emitCases is one case per way a transition of the catalogue happens.
// TestEveryTransitionEmitsItsEvent requires a case for every type.
var emitCases = []emitCase{
	{name: "imported", typ: models.EventSubscriptionCreated,
		prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription { return models.Subscription{} },
		act: func(t *testing.T, b *daemontest.Bundle, _ models.Subscription) int64 {
			return seedSub(t, b, "imported", cardPays).ID
		}},
	{name: "created through the admin API", typ: models.EventSubscriptionCreated,
		prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription { return models.Subscription{} },
		act: func(t *testing.T, b *daemontest.Bundle, _ models.Subscription) int64 {
			cus, pm := b.SaveCard(t, cardPays)
			sub, created, err := b.D.Ops().CreateSubscription(context.Background(), eventActor, ops.NewSubscription{
				Reference: "api", Customer: cus, PaymentMethod: pm, Amount: 1000, Currency: "USD", Interval: "month", IntervalCount: 1, Email: "api@example.com", Anchor: b.Clock.Now()})
			require.NoError(t, err)
			require.True(t, created)
			return sub.ID
		}},
	{name: "billing pass", typ: models.EventInvoiceCreated, prepare: fresh,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			b.Run(t, 0, 0)
			// A second pass over the same period inserts nothing (ON CONFLICT):
			// no second invoice.created.
			_, err := b.D.Pass(context.Background(), context.Background(), "test")
			require.NoError(t, err)
			return firstInvoice(t, b, sub)
		}},
	{name: "charge succeeded", typ: models.EventInvoicePaid, prepare: fresh,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			b.Run(t, 0, 0)
			return firstInvoice(t, b, sub)
		}},
	{name: "charge declined", typ: models.EventSubscriptionPastDue, prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription {
		return seedSub(t, b, "declined", cardDeclines)
	},
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			b.Run(t, 0, 0)
			return sub.ID
		}},
	{name: "case opened", typ: models.EventDunningOpened, prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription {
		return seedSub(t, b, "declined", cardDeclines)
	},
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			b.Run(t, 0, 0)
			return onlyCaseOf(t, b, sub.ID).ID
		}},
	{name: "dunning retry paid", typ: models.EventDunningRecovered, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			recoverByRetry(t, b, sub)
			return onlyCaseOf(t, b, sub.ID).ID
		}},
	{name: "owed invoice paid", typ: models.EventSubscriptionReactivated, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			recoverByRetry(t, b, sub)
			return sub.ID
		}},
	{name: "owed invoice voided", typ: models.EventSubscriptionReactivated, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			voidFirst(t, b, sub)
			return sub.ID
		}},
	{name: "operator void", typ: models.EventInvoiceVoided, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			voidFirst(t, b, sub)
			return firstInvoice(t, b, sub)
		}},
	{name: "schedule exhausted", typ: models.EventDunningExhausted, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			exhaust(t, b, sub)
			return onlyCaseOf(t, b, sub.ID).ID
		}},
	{name: "written off", typ: models.EventInvoiceUncollectible, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			exhaust(t, b, sub)
			return firstInvoice(t, b, sub)
		}},
	{name: "final action cancel", typ: models.EventSubscriptionCanceled, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			exhaust(t, b, sub)
			return sub.ID
		}},
	{name: "final action unpaid", typ: models.EventSubscriptionUnpaid, prepare: inDunning,
		configure: func(c *config.Config) { c.Dunning.FinalAction = config.FinalActionUnpaid },
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			exhaust(t, b, sub)
			return sub.ID
		}},
	{name: "operator cancel now", typ: models.EventSubscriptionCanceled, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			_, err := b.D.Ops().CancelSubscription(context.Background(), eventActor, sub.Reference, "test", ops.CancelOptions{})
			require.NoError(t, err)
			return sub.ID
		},
		check: func(t *testing.T, b *daemontest.Bundle, ev models.Event) {
			// The owed invoice was voided by the same action.
			require.Equal(t, models.InvoiceVoid, invoicesOf(t, b, ev.ObjectID)[0].Status)
			// Voiding it passed the subscription through active inside the
			// cancel's transaction: the merchant hears canceled, not a
			// reactivation that never committed.
			for _, e := range eventsAfter(t, b, 0) {
				require.NotEqual(t, models.EventSubscriptionReactivated, e.Type, "a cancel announced a reactivation")
			}
		}},
	{name: "cancel at period end", typ: models.EventSubscriptionCanceled, prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription {
		sub := paid(t, b)
		_, err := b.D.Ops().CancelSubscription(context.Background(), eventActor, sub.Reference, "test", ops.CancelOptions{AtPeriodEnd: true})
		require.NoError(t, err)
		return sub
	},
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			b.Run(t, 32*24*time.Hour, 24*time.Hour)
			return sub.ID
		}},
	{name: "operator pause", typ: models.EventSubscriptionPaused, prepare: paid,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			_, err := b.D.Ops().PauseSubscription(context.Background(), eventActor, sub.Reference, "test")
			require.NoError(t, err)
			// Pausing again changes nothing and emits nothing.
			_, err = b.D.Ops().PauseSubscription(context.Background(), eventActor, sub.Reference, "test")
			require.NoError(t, err)
			return sub.ID
		}},
	{name: "operator resume", typ: models.EventSubscriptionResumed, prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription {
		sub := paid(t, b)
		_, err := b.D.Ops().PauseSubscription(context.Background(), eventActor, sub.Reference, "test")
		require.NoError(t, err)
		return sub
	},
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			_, err := b.D.Ops().ResumeSubscription(context.Background(), eventActor, sub.Reference, "test")
			require.NoError(t, err)
			return sub.ID
		}},
	{name: "operator refund", typ: models.EventInvoiceRefunded, prepare: paid,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			inv := invoicesOf(t, b, sub.ID)[0]
			_, err := b.D.Ops().RefundInvoice(context.Background(), eventActor, inv.PublicID, "test", ops.RefundOptions{})
			require.NoError(t, err)
			b.Run(t, 2*time.Minute, time.Minute)
			return inv.ID
		},
		check: func(t *testing.T, b *daemontest.Bundle, ev models.Event) {
			var body struct {
				Data struct {
					Refund struct {
						Status string `json:"status"`
					} `json:"refund"`
				} `json:"data"`
			}
			require.NoError(t, json.Unmarshal([]byte(ev.Body), &body))
			require.Equal(t, string(models.RefundSucceeded), body.Data.Refund.Status, "the payload carries the refund")
		}},
	{name: "second payment refunded automatically", typ: models.EventInvoiceRefunded, prepare: paid,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			inv := invoicesOf(t, b, sub.ID)[0]
			_, err := b.Sim.DuplicateSuccess(inv.PaymentIntentID)
			require.NoError(t, err)
			b.Run(t, 30*time.Second, 10*time.Second)
			return inv.ID
		}},
	{name: "late success on a void invoice refunded", typ: models.EventInvoiceRefunded,
		prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription {
			sub := seedSub(t, b, "late", "4000000000000259") // processing: settles later by webhook
			b.D.Tick(context.Background())
			require.Equal(t, models.AttemptProcessing, attemptsOf(t, b, sub.ID)[0].Status)
			voidFirst(t, b, sub)
			return sub
		},
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			b.Run(t, time.Minute, 10*time.Second)
			require.Equal(t, models.InvoiceVoid, invoicesOf(t, b, sub.ID)[0].Status)
			return firstInvoice(t, b, sub)
		}},
	{name: "capture declined", typ: models.EventInvoiceReopened, provider: config.ProviderCheckout, prepare: paid,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			a := attemptsOf(t, b, sub.ID)[0]
			resp, err := http.Post(b.Config.Gateway.BaseURL+"/_sim/payments/"+a.PaymentIntentID+"/capture_decline", "application/json", nil)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			b.Run(t, time.Minute, time.Minute)
			return a.InvoiceID
		}},
	{name: "card expires before the next charge", typ: models.EventPaymentMethodExpiring,
		prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription {
			cus, pm := b.SaveCardExpiring(t, cardPays, 3, 2026)
			b.Seed(t, storetest.Subscription{Reference: "expiring", Customer: cus, PaymentMethod: pm, Amount: 1900, Currency: "USD", Anchor: b.Clock.Now()})
			b.Run(t, 0, 0)
			return subscriptionByRef(t, b, "expiring")
		},
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			runTo(t, b, nextCharge.Add(-7*24*time.Hour), 24*time.Hour)
			// Later runs of the cards job queue no second notice.
			b.Run(t, 2*24*time.Hour, 12*time.Hour)
			return sub.ID
		}},
	{name: "card replaced on the pay page", typ: models.EventPaymentMethodReplaced, mail: true,
		prepare: func(t *testing.T, b *daemontest.Bundle) models.Subscription {
			cus, pm := b.SaveCardExpiring(t, cardPays, 3, 2026)
			b.Seed(t, storetest.Subscription{Reference: "expiring", Customer: cus, PaymentMethod: pm, Amount: 1900, Currency: "USD", Anchor: b.Clock.Now()})
			runTo(t, b, nextCharge.Add(-7*24*time.Hour), 24*time.Hour)
			return subscriptionByRef(t, b, "expiring")
		},
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			links := b.PayLinks(t)
			require.Len(t, links, 1)
			resp, _ := send(t, http.MethodPost, links[0], url.Values{"action": {"update_card"}})
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			resp, _ = send(t, http.MethodPost, resp.Header.Get("Location"),
				url.Values{"card_number": {"5555555555554444"}, "exp_month": {"11"}, "exp_year": {"2031"}, "cvc": {"123"}})
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			// The setup_intent.succeeded webhook makes it the subscription's card.
			b.Run(t, time.Hour, time.Hour)
			require.NotEqual(t, sub.PaymentMethodID, subscriptionByRef(t, b, sub.Reference).PaymentMethodID)
			return sub.ID
		},
		check: requirePreviousCard},
	{name: "operator card update", typ: models.EventPaymentMethodReplaced, prepare: inDunning,
		act: func(t *testing.T, b *daemontest.Bundle, sub models.Subscription) int64 {
			pm := secondCard(t, b, sub)
			_, err := b.D.Ops().UpdateSubscription(context.Background(), eventActor, sub.Reference, "test", ops.SubscriptionUpdate{PaymentMethod: &pm})
			require.NoError(t, err)
			// The same card again replaces nothing.
			_, err = b.D.Ops().UpdateSubscription(context.Background(), eventActor, sub.Reference, "test", ops.SubscriptionUpdate{PaymentMethod: &pm})
			require.NoError(t, err)
			return sub.ID
		},
		check: requirePreviousCard},
}

// requirePreviousCard checks that a payment_method.replaced payload names
// the card replaced: the customer's first one.
func requirePreviousCard(t *testing.T, b *daemontest.Bundle, ev models.Event) {
	var body struct {
		Data struct {
			PreviousCard struct {
				PaymentMethod string `json:"payment_method"`
			} `json:"previous_card"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal([]byte(ev.Body), &body))
	var cus models.Customer
	require.NoError(t, b.Store.DB().Raw(`SELECT c.* FROM customers c JOIN subscriptions s ON s.customer_id = c.id WHERE s.id = ?`, ev.ObjectID).Scan(&cus).Error)
	var first models.PaymentMethod
	require.NoError(t, b.Store.DB().Where("customer_id = ?", cus.ID).Order("id").First(&first).Error)
	require.Equal(t, first.GatewayID, body.Data.PreviousCard.PaymentMethod, "the payload names the card replaced")
}

// recoverByRetry makes the declining card pay and lets dunning's first retry
// (a day later) charge it.
func recoverByRetry(t *testing.T, b *daemontest.Bundle, sub models.Subscription) {
	var pm models.PaymentMethod
	require.NoError(t, b.Store.DB().First(&pm, sub.PaymentMethodID).Error)
	require.NoError(t, b.Sim.SetCardBehaviour(pm.GatewayID, cardPays))
	b.Run(t, 2*24*time.Hour, 6*time.Hour)
	require.Equal(t, models.InvoicePaid, invoicesOf(t, b, sub.ID)[0].Status)
}

// voidFirst voids the subscription's first invoice as an operator.
func voidFirst(t *testing.T, b *daemontest.Bundle, sub models.Subscription) {
	_, err := b.D.Ops().VoidInvoice(context.Background(), eventActor, invoicesOf(t, b, sub.ID)[0].PublicID, "test")
	require.NoError(t, err)
}

// secondCard saves another card for the subscription's customer at the
// gateway and returns its id.
func secondCard(t *testing.T, b *daemontest.Bundle, sub models.Subscription) string {
	var cus models.Customer
	require.NoError(t, b.Store.DB().First(&cus, sub.CustomerID).Error)
	woosh, err := wooshpay.New(wooshpay.Options{BaseURL: b.Config.Gateway.BaseURL, SecretKey: daemontest.SecretKey, Timeout: 5 * time.Second})
	require.NoError(t, err)
	seti, err := woosh.CreateSetupIntent(context.Background(), wooshpay.SetupIntentParams{Customer: cus.GatewayID, Usage: "off_session",
		Card: wooshpay.CardData{Number: cardPays, ExpMonth: "12", ExpYear: "2035", CVC: "123"}}, "")
	require.NoError(t, err)
	return seti.PaymentMethod
}

// TestEveryTransitionEmitsItsEvent drives each transition of the event
// catalogue the way it happens (a billing pass, a webhook, dunning's clock,
// an operator's action) and requires exactly one event of its type, about
// the right object, written by it; repeating a transition that already
// happened emits nothing. Every type of the catalogue must have a case, so a
// new type cannot be added without showing where it is emitted.
func TestEveryTransitionEmitsItsEvent(t *testing.T) {
	covered := map[models.EventType]bool{}
	for _, c := range emitCases {
		covered[c.typ] = true
	}
	for _, typ := range models.EventTypes {
		require.True(t, covered[typ], "no case shows where %s is emitted", typ)
	}
	sink := newEventSink(t)
	for _, c := range emitCases {
		t.Run(string(c.typ)+"/"+c.name, func(t *testing.T) {
			daemontest.Each(t, daemontest.Options{NoMail: !c.mail, Provider: c.provider, Configure: eventsOn(sink, func(cfg *config.Config) {
				if c.configure != nil {
					c.configure(cfg)
				}
			})}, func(t *testing.T, b *daemontest.Bundle) {
				sub := c.prepare(t, b)
				mark := lastEventID(t, b)
				for _, ev := range eventsAfter(t, b, 0) {
					if c.typ != models.EventSubscriptionCreated {
						require.NotEqual(t, c.typ, ev.Type, "emitted before the transition")
					}
				}
				want := c.act(t, b, sub)
				var got []models.Event
				for _, ev := range eventsAfter(t, b, mark) {
					if ev.Type == c.typ {
						got = append(got, ev)
					}
				}
				require.Len(t, got, 1, "exactly one %s", c.typ)
				require.Equal(t, want, got[0].ObjectID)
				require.Equal(t, c.typ.ObjectType(), got[0].ObjectType)
				if c.check != nil {
					c.check(t, b, got[0])
				}
			})
		})
	}
}
