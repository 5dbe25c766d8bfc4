package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/gateway/signup"
	"github.com/billingd/billingd/internal/gateway/sim"
)

// subscriptionCard is one customer of the demo or the benchmark: the card the
// customer types into the signup page and the subscription it pays for.
type subscriptionCard struct {
	Reference, Email, Name string
	Number                 string
	Amount                 int64
	Currency, Interval     string
	Anchor                 time.Time
	Description            string
	// Key makes the saving idempotent (signup.Card.Key).
	Key string
}

// saveSubscriptionCards saves every card through the provider's signup flow
// and returns the subscription CSV that imports them (the columns of
// `billingd subscriptions import`, with previous_payment_id when the provider
// needs it) and what each save returned, in cards order.
func saveSubscriptionCards(ctx context.Context, saver *signup.Saver, provider string, cards []subscriptionCard, expYear int) ([]byte, []signup.Saved, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	header := []string{"reference", "email", "customer", "payment_method", "amount", "currency", "interval", "interval_count", "anchor", "description"}
	checkout := provider == config.ProviderCheckout
	if checkout {
		header = append(header, "previous_payment_id")
	}
	_ = w.Write(header)
	saved := make([]signup.Saved, 0, len(cards))
	for _, c := range cards {
		sv, err := saver.Save(ctx, signup.Card{Number: c.Number, ExpMonth: 12, ExpYear: expYear, CVC: "123",
			Email: c.Email, Name: c.Name, Currency: c.Currency, Key: c.Key})
		if err != nil {
			return nil, nil, fmt.Errorf("save card %s: %w", last4(c.Number), err)
		}
		saved = append(saved, sv)
		row := []string{c.Reference, c.Email, sv.Customer, sv.PaymentMethod, strconv.FormatInt(c.Amount, 10), c.Currency, c.Interval, "1",
			c.Anchor.UTC().Format(time.RFC3339), c.Description}
		if checkout {
			row = append(row, sv.PreviousPaymentID)
		}
		_ = w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), saved, nil
}

// providerName is how the output names a gateway.provider.
func providerName(provider string) string {
	if provider == config.ProviderCheckout {
		return "Checkout.com"
	}
	return "WooshPay"
}

// saveFlowName says how the provider's signup flow saves a card.
func saveFlowName(provider string) string {
	if provider == config.ProviderCheckout {
		return "card-storing payments (StoreCard)"
	}
	return "SetupIntents"
}

// ledgerColumns are DIR/ledger.csv's columns: amounts in ISO 4217 minor
// units (as billingd's database keeps them) and in the provider's wire units.
var ledgerColumns = []string{"reference", "payment_id", "status", "wire_status", "currency", "amount", "wire_amount",
	"amount_refunded", "wire_amount_refunded", "decline_code", "response_code", "customer", "payment_method", "created", "succeeded_at"}

// writeLedger saves the simulator's ledger in dir as ledger.json (the
// entries as GET /_sim/ledger answers them) and ledger.csv (one row per
// payment, by reference — the invoice's public id — then creation), so the
// gateway's side can be compared with billingd's database after the demo has
// stopped. It returns both paths.
func writeLedger(dir string, ledger []sim.LedgerEntry) (jsonPath, csvPath string, err error) {
	entries := append([]sim.LedgerEntry(nil), ledger...)
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].MerchantOrderID != entries[j].MerchantOrderID {
			return entries[i].MerchantOrderID < entries[j].MerchantOrderID
		}
		return entries[i].Created.Before(entries[j].Created)
	})
	js, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return "", "", err
	}
	jsonPath = filepath.Join(dir, "ledger.json")
	if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
		return "", "", err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(ledgerColumns)
	for _, e := range entries {
		succeeded := ""
		if !e.SucceededAt.IsZero() {
			succeeded = e.SucceededAt.UTC().Format(time.RFC3339)
		}
		_ = w.Write([]string{e.MerchantOrderID, e.ID, e.Status, e.WireStatus, e.Currency,
			strconv.FormatInt(e.Amount, 10), strconv.FormatInt(e.WireAmount, 10),
			strconv.FormatInt(e.AmountRefunded, 10), strconv.FormatInt(e.WireAmountRefunded, 10),
			e.DeclineCode, e.ResponseCode, e.Customer, e.PaymentMethod, e.Created.UTC().Format(time.RFC3339), succeeded})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return "", "", err
	}
	csvPath = filepath.Join(dir, "ledger.csv")
	if err := os.WriteFile(csvPath, buf.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	return jsonPath, csvPath, nil
}

// paidByCurrencyCommand is the sqlite3 command (its argument the database)
// that sums billingd's paid invoices per currency; the ledger's succeeded
// payments, summed the same way (ledgerByCurrencyCommand, its argument
// ledger.csv), must agree. billingd never runs them: they are for the person
// reading the demo's output.
const (
	paidByCurrencyCommand   = `sqlite3 %s "SELECT currency, COUNT(*), SUM(amount) FROM invoices WHERE status = 'paid' GROUP BY currency ORDER BY currency"`
	ledgerByCurrencyCommand = `sqlite3 :memory: ".import --csv %s ledger" "SELECT currency, COUNT(*), SUM(amount) FROM ledger WHERE status = 'succeeded' GROUP BY currency ORDER BY currency"`
)

// printDBHints prints the sqlite3 commands that compare the database with
// DIR/ledger.csv.
func printDBHints(out io.Writer, dbPath string) {
	ledgerCSV := filepath.Join(filepath.Dir(dbPath), "ledger.csv")
	fmt.Fprintf(out, "Database: %s\n", dbPath)
	fmt.Fprintf(out, "  sqlite3 %s \"SELECT status, COUNT(*) FROM invoices GROUP BY status\"\n", dbPath)
	fmt.Fprintf(out, "  paid per currency (ISO minor units), to compare with the succeeded rows of %s:\n", ledgerCSV)
	fmt.Fprintf(out, "  "+paidByCurrencyCommand+"\n", dbPath)
	fmt.Fprintf(out, "  "+ledgerByCurrencyCommand+"\n", ledgerCSV)
}
