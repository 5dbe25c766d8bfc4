package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/models"
	"github.com/billingd/billingd/internal/store"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// A card's recurring series (Checkout.com's previous_payment_id) comes from
// the import or from the payment that saved the card, is frozen into every
// off-session attempt on it, and is set once: a later payment on the same
// card does not restart the series, a new card has its own.
func TestCardSeriesIsKeptPerCardAndFrozenPerAttempt(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		storetest.Seed(t, st, t0, storetest.Subscription{Reference: "s1", Customer: "cus_1", PaymentMethod: "src_1", PreviousPaymentID: "pay_first", Anchor: t0})
		var pm models.PaymentMethod
		require.NoError(t, st.DB().Where("gateway_payment_method_id = ?", "src_1").First(&pm).Error)
		require.Equal(t, "pay_first", pm.PreviousPaymentID)

		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.CreateInvoices(t0, []store.NewInvoice{{SubscriptionID: 1, Reference: "s1", PeriodIndex: 0, PeriodStart: t0, PeriodEnd: t0.AddDate(0, 1, 0), Amount: 1000, Currency: "USD"}})
			return err
		}))
		claimed, err := st.ClaimNewAttempts(ctx, "test", t0, t0.Add(time.Hour), 1)
		require.NoError(t, err)
		require.Len(t, claimed, 1)
		require.Equal(t, "pay_first", claimed[0].PreviousPaymentID, "the attempt freezes the series it is sent with")
		stored, err := st.AttemptByID(ctx, claimed[0].ID)
		require.NoError(t, err)
		require.Equal(t, "pay_first", stored.PreviousPaymentID)

		require.NoError(t, st.InTx(ctx, func(tx *store.Tx) error {
			ok, err := tx.RecordPaymentMethod(t0, "cus_1", "src_1", store.SavedCard{SeriesPaymentID: "pay_later", Brand: "Visa", Last4: "4242"})
			require.True(t, ok)
			if err != nil {
				return err
			}
			ok, err = tx.RecordPaymentMethod(t0, "cus_1", "src_new", store.SavedCard{SeriesPaymentID: "pay_new", Last4: "1111"})
			require.True(t, ok)
			return err
		}))
		require.NoError(t, st.DB().Where("gateway_payment_method_id = ?", "src_1").First(&pm).Error)
		require.Equal(t, "pay_first", pm.PreviousPaymentID, "a series is not restarted")
		require.Equal(t, "4242", pm.Last4, "what was unknown is filled in")
		var fresh models.PaymentMethod
		require.NoError(t, st.DB().Where("gateway_payment_method_id = ?", "src_new").First(&fresh).Error)
		require.Equal(t, "pay_new", fresh.PreviousPaymentID)
	})
}
