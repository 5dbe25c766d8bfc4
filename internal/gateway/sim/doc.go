// Package sim is a faithful, in-memory fake of the WooshPay API subset billingd uses
// (docs/gateway-wooshpay.md): customers, setup intents that save a card, payment
// methods, payment intents (create, confirm, retrieve, cancel, search), setup-mode
// checkout sessions with their hosted "Save a card" page, a 3-D Secure challenge
// page, Stripe-style idempotency, signed webhook delivery with retries, and fault
// injection.
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
// an in-memory one: Options.Latency holds every /v1/ answer until a round trip
// has passed since the request arrived (without holding any lock, so thousands of
// requests can wait at once), and Options.RateLimit refuses requests over a real
// per-second limit with 429 and Retry-After, unprocessed, counted in
// Stats.RateLimited apart from injected faults.
//
// The same Server serves tests in-process (through httptest or ServeHTTP), the
// `billingd demo` command, and the standalone `billingd sim` subcommand (see
// ParseFlags and Serve). Paths under /v1/ are the WooshPay API (Basic auth, faults
// apply); paths under /_sim/ are an unauthenticated control plane that is never
// faulted (GET ledger, stats, events, faults and webhooks; PUT faults and
// webhooks, the latter switching delivery modes or delivery itself at runtime;
// POST settle and payment_intents/{id}/challenge?result=pass|fail); /3ds/{id} is
// the challenge page handed out in next_action and /checkout/setup/{id} the
// hosted page of a checkout session, both plain HTML forms (no JavaScript) that
// a browser, headless or not, or curl can drive; /healthz answers 200.
//
// Card numbers: a saved card keeps only brand, last four digits, expiry and the
// outcome its number selects in the test-card table, whether it came through the
// API or the hosted page. The number itself is never stored, logged, returned or
// written back into a page, so nothing the simulator emits can leak it.
//
// Time comes from Options.Now so tests can drive settlement and idempotency-key
// expiry with a fake clock; this package imports no other billingd package.
package sim
