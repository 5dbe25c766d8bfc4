package daemon_test

import (
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/failpoint"
	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// TestEmailAcceptedWhileTheDatabaseDropsIsSentOnce is finding 10 through the
// assembled daemon: a declined charge queues its dunning email, the SMTP
// server accepts it, and the write that marks it sent fails three times (the
// store's error point, as a dropped connection). The daemon's mail worker
// retries the write, not the send: the server holds one message, the email
// row is sent after one attempt and one pay link was minted — also after the
// daemon ran on for hours past the email's lease.
func TestEmailAcceptedWhileTheDatabaseDropsIsSentOnce(t *testing.T) {
	daemontest.Each(t, daemontest.Options{}, func(t *testing.T, b *daemontest.Bundle) {
		cus, pm := b.SaveCard(t, "4000000000009995")
		b.Seed(t, storetest.Subscription{Reference: "declines", Customer: cus, PaymentMethod: pm})
		defer failpoint.FailTimes(failpoint.StoreMarkEmailSent, 3)()

		b.Run(t, 0, time.Minute)
		b.Run(t, 3*time.Hour, 10*time.Minute)

		require.Equal(t, 1, b.SMTP.Count(), "the SMTP server received the email exactly once")
		require.Zero(t, failpoint.Remaining(failpoint.StoreMarkEmailSent), "the sent write failed three times")
		var emails []models.Email
		require.NoError(t, b.Store.DB().Find(&emails).Error)
		require.Len(t, emails, 1)
		require.Equal(t, models.EmailSent, emails[0].Status)
		require.Equal(t, 1, emails[0].Attempts)
		require.Equal(t, emails[0].MessageID, b.SMTP.Messages()[0].MessageID)
		var links int64
		require.NoError(t, b.Store.DB().Model(&models.PayLink{}).Count(&links).Error)
		require.EqualValues(t, 1, links, "one link minted: a resend would have minted another")
	})
}
