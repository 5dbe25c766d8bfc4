package dunning

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
)

// CardReader reads a saved card from the gateway (gateway.Accounts).
type CardReader interface {
	RetrievePaymentMethod(ctx context.Context, id string) (*gateway.PaymentMethod, error)
}

// CardNoticeSummary is what one run of the expiring-card notice did.
type CardNoticeSummary struct {
	// Read is the number of cards read from the gateway.
	Read int
	// Queued is the number of card_expiring emails put in the outbox.
	Queued int
	// Renewed counts cards the gateway reported with a later expiry (an
	// account updater renewed them): recorded, nothing sent.
	Renewed int
	// Failed counts cards the gateway could not be asked about; they are
	// looked at again on the next run.
	Failed int
}

// cardBatch bounds one run's reads, so a large backlog is worked off over
// several runs instead of one long burst against the gateway.
const cardBatch = 100

// SavedCardOf is what a gateway's card read records about a card.
func SavedCardOf(c *gateway.CardDetails) store.SavedCard {
	if c == nil {
		return store.SavedCard{}
	}
	return store.SavedCard{Brand: c.Brand, Last4: c.Last4, ExpMonth: c.ExpMonth, ExpYear: c.ExpYear}
}

// NoticeExpiringCards warns customers whose card expires before their
// subscription's next charge, when that charge is within notice of now. Each
// candidate's card is re-read from the gateway first (an account updater may
// have renewed it: then the new expiry is recorded and nothing is sent);
// otherwise one card_expiring email is queued in the outbox, in the same
// transaction that records the read, carrying a card-update link scoped to
// the subscription. Its dedupe key is the (subscription, card, period), so a
// card is never noticed twice for one period, by this instance or another.
// Subscriptions that are paused, canceled, unpaid or canceling before that
// charge get nothing. Cards whose details were never read are read too (at
// most a batch per run), so every card's expiry becomes known.
//
// No transaction is held across a gateway call.
func (s *Service) NoticeExpiringCards(ctx context.Context, now time.Time, notice time.Duration, cards CardReader) (CardNoticeSummary, error) {
	var sum CardNoticeSummary
	if notice <= 0 || cards == nil {
		return sum, nil
	}
	unread, err := s.Store.UnreadCards(ctx, cardBatch)
	if err != nil {
		return sum, err
	}
	readNow := map[int64]*gateway.PaymentMethod{}
	for _, u := range unread {
		pm, ok := s.readCard(ctx, cards, u.GatewayPM, &sum)
		if !ok {
			continue
		}
		if err := s.Store.InTx(ctx, func(tx *store.Tx) error { return tx.RecordCardRead(now, u.PaymentMethodID, SavedCardOf(pm.Card)) }); err != nil {
			return sum, err
		}
		readNow[u.PaymentMethodID] = pm
	}
	due, err := s.Store.ExpiringCards(ctx, now, now.Add(notice), cardBatch)
	if err != nil {
		return sum, err
	}
	for _, c := range due {
		if ctx.Err() != nil {
			return sum, ctx.Err()
		}
		pm := readNow[c.PaymentMethodID]
		if pm == nil {
			var ok bool
			if pm, ok = s.readCard(ctx, cards, c.GatewayPM, &sum); !ok {
				continue
			}
		}
		if err := s.noticeOne(ctx, now, c, pm, &sum); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// readCard reads one card from the gateway; a failure is logged and counted,
// and the card is left for the next run.
func (s *Service) readCard(ctx context.Context, cards CardReader, id string, sum *CardNoticeSummary) (*gateway.PaymentMethod, bool) {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	pm, err := cards.RetrievePaymentMethod(rctx, id)
	if err != nil {
		sum.Failed++
		ev := s.Log.Warn()
		if errors.Is(err, gateway.ErrNotFound) {
			// Removed at the gateway: the next charge finds out and dunning
			// asks for a new card; no notice about a card that is gone.
			ev = s.Log.Info()
		}
		ev.Err(err).Str("payment_method", id).Msg("could not read the card from the gateway; trying again on the next run")
		return nil, false
	}
	sum.Read++
	return pm, true
}

// noticeOne records the gateway's answer about one candidate's card and, if
// the card still expires before the next charge, queues its notice.
func (s *Service) noticeOne(ctx context.Context, now time.Time, c store.ExpiringCard, pm *gateway.PaymentMethod, sum *CardNoticeSummary) error {
	saved := SavedCardOf(pm.Card)
	fresh := c.Card
	if pm.Card != nil && pm.Card.ExpYear > 0 {
		fresh = store.CardOnFile{Brand: pm.Card.Brand, Last4: pm.Card.Last4, ExpMonth: pm.Card.ExpMonth, ExpYear: pm.Card.ExpYear}
	}
	log := s.Log.With().Int64("subscription_id", c.SubscriptionID).Str("subscription", c.Reference).Str("payment_method", c.GatewayPM).Logger()
	return s.Store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.RecordCardRead(now, c.PaymentMethodID, saved); err != nil {
			return err
		}
		if !fresh.ExpiresBy(c.NextBillingAt) {
			if c.Card.ExpiresBy(c.NextBillingAt) {
				sum.Renewed++
				log.Info().Str("expiry", fresh.Expiry()).Msg("card renewed at the gateway; no expiring-card notice needed")
			}
			return nil
		}
		still, err := tx.StillExpiring(c)
		if err != nil || !still {
			return err
		}
		if c.CustomerEmail == "" {
			log.Warn().Msg("customer has no email address; expiring-card notice not queued")
			return nil
		}
		sub := c.SubscriptionID
		e := &models.Email{
			DedupeKey:      store.CardNoticeKey(c.SubscriptionID, c.PaymentMethodID, c.NextPeriod),
			Kind:           models.EmailCardExpiring,
			SubscriptionID: &sub,
			ToAddress:      c.CustomerEmail,
			LinkPurpose:    models.LinkUpdateCard,
			NextAttemptAt:  now,
		}
		queued, err := tx.EnqueueEmail(now, s.MailDomain, e)
		if err != nil {
			return fmt.Errorf("dunning: queue expiring-card notice of %s: %w", c.Reference, err)
		}
		if queued {
			sum.Queued++
			log.Info().Str("expiry", fresh.Expiry()).Time("next_billing_at", c.NextBillingAt).Msg("card expires before the next charge: notice queued")
		}
		return nil
	})
}
