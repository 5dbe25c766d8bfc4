package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/models"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer a running command writes while the test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDemoServeLinks runs `billingd demo --serve` on each provider and follows
// its emails' links as a customer would: the 3-D Secure invoice's pay link
// leads to the simulator's challenge page, and passing it pays the invoice;
// a hard-declined card's "use a different card" leads to the hosted card page,
// and the card saved there is charged and pays the invoice. Ctrl-C ends the
// demo with exit 0.
func TestDemoServeLinks(t *testing.T) {
	for _, tc := range []struct {
		provider, challenge, cardPage string
	}{
		{config.ProviderWooshPay, `/3ds/`, `/checkout/setup/`},
		{config.ProviderCheckout, `/3ds/`, `/hpp/`},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			signals := make(chan os.Signal, 1)
			out, errb := &lockedBuffer{}, &lockedBuffer{}
			m := &Main{Stdout: out, Stderr: errb, Signals: signals, Getenv: func(string) string { return "" }}
			done := make(chan int, 1)
			go func() {
				done <- m.Run(context.Background(), []string{"demo", "--provider", tc.provider, "--serve", "--dir", dir, "--processing-delay", "50ms"})
			}()
			deadline := time.Now().Add(60 * time.Second)
			for !strings.Contains(out.String(), "\nServing: ") {
				select {
				case code := <-done:
					t.Fatalf("demo exited %d before serving:\n%s\n%s", code, out.String(), errb.String())
				default:
				}
				require.True(t, time.Now().Before(deadline), "demo never started serving:\n%s", out.String())
				time.Sleep(50 * time.Millisecond)
			}
			text := out.String()
			link := func(subject string) string {
				t.Helper()
				m := regexp.MustCompile(`(?m)^\S+\s+` + regexp.QuoteMeta(subject) + `.*\s(http://\S+/pay/\S+)$`).FindStringSubmatch(text)
				require.NotNil(t, m, "no link for %q in:\n%s", subject, text)
				return m[1]
			}
			client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			post := func(u string, form url.Values) string {
				t.Helper()
				res, err := client.PostForm(u, form)
				require.NoError(t, err)
				_ = res.Body.Close()
				require.Equal(t, http.StatusSeeOther, res.StatusCode, "POST %s", u)
				loc, err := res.Location()
				require.NoError(t, err)
				return loc.String()
			}

			challenge := post(link("Your bank needs you to confirm your payment of 25.00 USD"), url.Values{"action": {"pay"}})
			require.Contains(t, challenge, tc.challenge)
			back := post(challenge, url.Values{"result": {"pass"}})
			res, err := client.Get(back)
			require.NoError(t, err)
			_ = res.Body.Close()
			require.Equal(t, http.StatusOK, res.StatusCode, "the return page %s", back)

			cardPage := post(link("Please update your card to keep Plan for card ending 0069 active"), url.Values{"action": {"update_card"}})
			require.Contains(t, cardPage, tc.cardPage)
			post(cardPage, url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "exp_year": {"2035"}, "cvc": {"123"}})

			cfg := config.Default()
			cfg.Database.DSN = filepath.Join(dir, "billingd.db")
			st, err := openStore(context.Background(), cfg, false)
			require.NoError(t, err)
			defer st.Close()
			paid := func(ref string) bool {
				var n int64
				require.NoError(t, st.DB().Model(&models.Invoice{}).
					Joins("JOIN subscriptions ON subscriptions.id = invoices.subscription_id").
					Where("subscriptions.reference = ? AND invoices.status = ?", ref, models.InvoicePaid).Count(&n).Error)
				return n == 1
			}
			threeDS, hard := "", ""
			for i, c := range demoCards {
				switch c.Number {
				case "4462030000000000":
					threeDS = demoReference(i)
				case "4000000000000069":
					hard = demoReference(i)
				}
			}
			deadline = time.Now().Add(30 * time.Second)
			for !paid(threeDS) || !paid(hard) {
				require.True(t, time.Now().Before(deadline), "3-D Secure paid %v, new card paid %v", paid(threeDS), paid(hard))
				time.Sleep(100 * time.Millisecond)
			}

			signals <- syscall.SIGINT
			select {
			case code := <-done:
				require.Equal(t, exitOK, code, "stderr: %s", errb.String())
			case <-time.After(20 * time.Second):
				t.Fatal("the demo did not stop on Ctrl-C")
			}
			// The ledger saved on the way out has the payments made while
			// serving, and still agrees with the database.
			require.Contains(t, out.String(), "with what was paid while serving, saved again")
			ledger := checkSavedLedger(t, dir, out.String())
			require.Greater(t, len(ledger), len(demoCards), "the challenge's and the new card's payments are in the saved ledger")
		})
	}
}
