package daemon

import (
	"context"
	"time"

	"github.com/billingd/billingd/internal/dunning"
)

// cardsEvery is how often the expiring-card notice looks for subscriptions
// whose card expires before their next charge: the notice goes out within
// this of dunning.card_expiry_notice before the charge.
const cardsEvery = time.Hour

// NoticeExpiringCards runs the expiring-card notice once
// (dunning.Service.NoticeExpiringCards): cards re-read from the gateway, one
// card_expiring email queued per subscription, card and period. Off when
// dunning.card_expiry_notice is 0 or no gateway client is configured.
func (d *Daemon) NoticeExpiringCards(ctx context.Context) (dunning.CardNoticeSummary, error) {
	notice := d.Config().Dunning.CardExpiryNotice.D()
	if notice <= 0 || d.client == nil {
		return dunning.CardNoticeSummary{}, nil
	}
	return d.cur.Load().dunning.NoticeExpiringCards(ctx, d.clock.Now(), notice, d.client)
}
