// Package apicall holds what every provider client of package gateway does the
// same way around one HTTP call: build and send a bounded request, refuse ids
// and keys that would change or break the request, read Retry-After, scrub
// whatever the provider echoes back before it reaches an error or the
// database, and report failures of object-returning calls as *Error.
//
// It exists so that a fix to one of these safety rules (a card number in an
// error, a body read without a cap, a key net/http would refuse) lands in
// every provider at once. Everything that differs between providers — the id
// alphabet, the API-key shape, the error prefix, limits — is a parameter, so
// the provider packages keep owning their wire format and their decisions.
// It imports nothing of billingd but package gateway.
package apicall
