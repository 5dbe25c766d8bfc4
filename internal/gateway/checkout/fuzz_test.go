package checkout

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/gateway"
)

// FuzzVerifyWebhook feeds arbitrary signed bodies to the verifier and
// parser: it must never panic, every failure must be a malformed event, and
// every accepted event must have an id and a type, with amounts that passed
// conversion.
func FuzzVerifyWebhook(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "webhook_*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"evt_1","type":"payment_refunded","data":{"id":"pay_1","action_id":"act_1","amount":-5,"currency":"JPY"}}`))
	f.Add([]byte(`{"id":"evt_1","type":"card_verified","data":{"id":"pay_1","source":{"id":"src_1"},"metadata":{"a":{"b":1}}}}`))
	f.Add([]byte(`{"id":"evt_1","type":"payment_approved","data":{"id":"pay_1","amount":1e400,"currency":"USD"}}`))
	v, err := NewWebhookVerifier([]string{whKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h := http.Header{}
		h.Set(SignatureHeader, Sign(whKey, body))
		ev, err := v.VerifyWebhook(body, h, time.Time{})
		if err != nil {
			if !errors.Is(err, gateway.ErrWebhookMalformed) {
				t.Fatalf("signed body failed with %v, want a malformed event", err)
			}
			if strings.Contains(err.Error(), whKey) {
				t.Fatal("error quotes the key")
			}
			return
		}
		if ev.ID == "" || ev.Type == "" {
			t.Fatalf("accepted event without id or type: %+v", ev)
		}
		if n := boolInt(ev.PaymentIntent != nil) + boolInt(ev.Refund != nil) + boolInt(ev.SetupIntent != nil); n > 1 {
			t.Fatalf("event carries %d objects", n)
		}
		if ev.PaymentIntent != nil && ev.PaymentIntent.ID == "" {
			t.Fatal("payment event without payment id")
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
