package daemon_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/billingd/billingd/internal/daemon/daemontest"
	"github.com/billingd/billingd/internal/gateway/sim"
	"github.com/billingd/billingd/internal/store/storetest"
	"github.com/stretchr/testify/require"
)

// The raw token of a pay link lives only in the email and the customer's
// browser: after pay-link round trips of every kind (a 3-D Secure payment
// with its return page, a declined press, a card replaced on the gateway's
// hosted page, an abandoned challenge canceled) no live token appears in
// `sqlite3 billingd.db .dump` (stored webhook payloads included), the daemon's
// log, the simulator's request log or the events it sent.
func TestNoLiveTokenIsStoredLoggedOrSentToTheGateway(t *testing.T) {
	var logs daemontest.LogBuffer
	var simLog daemontest.LogBuffer
	b := daemontest.New(t, daemontest.Options{Log: &logs, Sim: sim.Options{Logf: func(format string, args ...any) {
		fmt.Fprintf(&simLog, format+"\n", args...)
	}}})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(u string, form url.Values) *http.Response {
		resp, err := noRedirect.PostForm(u, form)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	get := func(u string) int {
		resp, err := noRedirect.Get(u)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	var subs []storetest.Subscription
	for _, c := range []struct{ ref, number string }{
		{"threeds", "4462030000000000"}, {"abandoned", "4462030000000000"},
		{"soft", "4000000000009995"}, {"hard", "4000000000000069"},
	} {
		cus, pm := b.SaveCard(t, c.number)
		subs = append(subs, storetest.Subscription{Reference: c.ref, Customer: cus, PaymentMethod: pm})
	}
	b.Seed(t, subs...)
	b.Run(t, 0, 0)
	links := b.PayLinks(t)
	require.Len(t, links, 4)

	passed := false
	for _, link := range links {
		resp, err := noRedirect.Get(link)
		require.NoError(t, err)
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		if strings.Contains(string(page), `id="pay"`) {
			resp = post(link, url.Values{"action": {"pay"}})
		} else {
			resp = post(link, url.Values{"action": {"update_card"}})
		}
		loc := resp.Header.Get("Location")
		switch {
		case strings.Contains(loc, "/checkout/setup/"):
			// The hosted card page: success and cancel URLs come back.
			resp = post(loc, url.Values{"card_number": {"4242424242424242"}, "exp_month": {"12"}, "exp_year": {"2031"}, "cvc": {"123"}})
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			require.Equal(t, http.StatusOK, get(resp.Header.Get("Location")))
		case strings.Contains(loc, "/3ds/") && !passed:
			// Pass one challenge, leave the other for the timeout.
			passed = true
			resp = post(loc, url.Values{"result": {"pass"}})
			require.Equal(t, http.StatusSeeOther, resp.StatusCode)
			require.Equal(t, http.StatusOK, get(resp.Header.Get("Location")))
		}
	}
	b.Run(t, 40*time.Minute, time.Minute) // webhooks, the retry with the new card, the abandoned challenge's cancel

	var tokens []string
	for _, l := range links {
		tokens = append(tokens, l[strings.LastIndex(l, "/")+1:])
	}
	haystacks := map[string]string{"daemon log": logs.String(), "simulator request log": simLog.String()}
	events, err := json.Marshal(b.Sim.Events())
	require.NoError(t, err)
	haystacks["simulator events"] = string(events)
	require.Contains(t, haystacks["simulator events"], "return_url", "the events carry the return URLs handed to the gateway")
	require.NotEmpty(t, haystacks["simulator request log"])
	if sqlite3, err := exec.LookPath("sqlite3"); err == nil {
		out, err := exec.Command(sqlite3, b.Config.Database.DSN, ".dump").CombinedOutput()
		require.NoError(t, err, string(out))
		haystacks["sqlite3 .dump"] = string(out)
		require.Contains(t, string(out), "INSERT INTO webhook_events", "the dump holds the stored webhook payloads")
	} else {
		t.Log("sqlite3 not installed: the database is read through the store instead")
	}
	var rows []map[string]any
	for _, table := range []string{"webhook_events", "charge_attempts", "pay_links", "emails", "dunning_steps"} {
		var rs []map[string]any
		require.NoError(t, b.Store.DB().Table(table).Find(&rs).Error)
		rows = append(rows, rs...)
	}
	dbRows, err := json.Marshal(rows)
	require.NoError(t, err)
	haystacks["database rows"] = string(dbRows)
	for name, text := range haystacks {
		for _, tok := range tokens {
			require.NotContains(t, text, tok, "a live token in the %s", name)
		}
	}
}
