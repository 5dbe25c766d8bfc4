// Package sim is a faithful, in-memory fake of the payment gateway APIs billingd
// uses: WooshPay's (docs/gateway-wooshpay.md, the default) and, with
// Options.Provider "checkout", Checkout.com's (docs/gateway-checkout.md).
//
// One core, a thin wire layer per provider. The core owns the objects
// (customers, saved cards, payments, refunds), the ledger, idempotency, fault
// injection, signed webhook delivery with retries and spoils, the hosted card
// page and the 3-D Secure challenge page; it keeps every amount in ISO 4217
// minor units. A wire layer (wireLayer) owns what a client can tell apart:
// routes, request decoding and the conversion of amounts from the provider's
// wire units (internal/gateway/units), answers and errors, authentication,
// the idempotency flavour, event names and payloads, the webhook envelope and
// its signature.
//
// WooshPay (Stripe-shaped): customers, setup intents that save a card,
// payment methods, payment intents (create, confirm, retrieve, cancel,
// search), refunds, setup-mode checkout sessions with their hosted "Save a
// card" page, Stripe-style idempotency (every executed answer is kept), Basic
// auth, events signed with Wooshpay-Signature. Checkout.com: POST /payments
// with card and id sources (card verification at amount 0, merchant-initiated
// recurring payments chained by previous_payment_id, 3-D Secure by redirect,
// authorization then capture), payment lists by reference, refunds and
// actions, customers and instruments, a hosted page that stores and verifies a
// card, Bearer auth, idempotency that keeps only answers sent as 2xx, events
// signed with Cko-Signature. Both answer the same test cards (TestCards) the
// same way, in their own codes.
//
// The simulator exists so that the exactly-once charge protocol can be exercised
// against the failure modes that make it necessary: a 500 after the charge was
// recorded, a connection dropped after the money moved, a 409 while the first try is
// still in flight, a 429 with Retry-After, a slow answer that trips a client timeout,
// and webhooks that arrive late, out of order, more than once, only after retries,
// or first with a forged signature or a stale timestamp (see Delivery). API faults
// are drawn from one seeded random source and webhook decisions from a second one
// seeded from the same seed, so a failing run can be replayed with the same seed
// and the same request order, and enabling webhook modes never changes which API
// requests are faulted.
//
// For load tests the simulator can also behave like a remote gateway rather than
// an in-memory one: Options.Latency holds every API answer until a round trip
// has passed since the request arrived (without holding any lock, so thousands of
// requests can wait at once), and Options.RateLimit refuses requests over a real
// per-second limit with 429 and Retry-After, unprocessed, counted in
// Stats.RateLimited apart from injected faults.
//
// The same Server serves tests in-process (through httptest or ServeHTTP), the
// `billingd demo` command, and the standalone `billingd sim` subcommand (see
// ParseFlags and Serve). The provider's API paths (/v1/ for WooshPay; /payments,
// /customers, /instruments and /hosted-payments for Checkout.com) are where auth
// and faults apply; paths under /_sim/ are an unauthenticated control plane that
// is never faulted (GET ledger, refunds, stats, events, faults and webhooks; PUT
// faults and webhooks, the latter switching delivery modes or delivery itself at
// runtime; POST settle, payment_intents/{id}/challenge?result=pass|fail and
// payments/{id}/capture_decline); /3ds/{id} is the challenge page, and
// /checkout/setup/{id} and /hpp/{id} the hosted card pages, all plain HTML
// forms (no JavaScript) that a browser, headless or not, or curl can drive;
// /healthz answers 200.
//
// The ledger (Ledger, GET /_sim/ledger) reports every payment in ISO minor units
// and in the provider's wire units, keyed by the order: WooshPay's
// merchant_order_id, Checkout.com's reference.
//
// Card numbers: a saved card keeps only brand, last four digits, expiry and the
// outcome its number selects in the test-card table, whether it came through the
// API or a hosted page. The number itself is never stored, logged, returned or
// written back into a page, so nothing the simulator emits can leak it.
//
// Time comes from Options.Now so tests can drive settlement, captures, challenge
// expiry and idempotency-key expiry with a fake clock; this package imports no
// other billingd package outside internal/gateway.
package sim
