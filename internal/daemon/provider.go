package daemon

import (
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/config"
	"github.com/billingd/billingd/internal/gateway"
	"github.com/billingd/billingd/internal/gateway/checkout"
	"github.com/billingd/billingd/internal/gateway/wooshpay"
)

// GatewayClient is everything billingd asks of a provider's client: the
// charge path, refunds, the hosted card-update page and the account reads of
// an import. Each provider's client implements all of it.
type GatewayClient interface {
	gateway.Gateway
	gateway.Refunds
	gateway.SetupSessions
	gateway.Accounts
}

// NewGatewayClient builds the client of gateway.provider from the config's
// gateway keys: the daemon's, and the import's verification.
func NewGatewayClient(cfg *config.Config) (GatewayClient, error) {
	g := cfg.Gateway
	switch g.Provider {
	case config.ProviderWooshPay:
		return wooshpay.New(wooshpay.Options{BaseURL: g.BaseURL, SecretKey: g.SecretKey.Reveal(), Timeout: g.Timeout.D()})
	case config.ProviderCheckout:
		return checkout.New(checkout.Options{BaseURL: g.BaseURL, SecretKey: g.SecretKey.Reveal(), Timeout: g.Timeout.D()})
	}
	return nil, &config.FieldError{Key: "gateway.provider", Value: g.Provider, Message: "is not a provider this build knows"}
}

// keyPolicy is the idempotency-key policy of gateway.provider, known without
// a client (the dry-run plan has no gateway secret).
func keyPolicy(cfg *config.Config) gateway.KeyPolicy {
	switch cfg.Gateway.Provider {
	case config.ProviderWooshPay:
		return wooshpay.Policy
	case config.ProviderCheckout:
		return checkout.Policy
	}
	return gateway.KeyPolicy{Window: 23 * time.Hour}
}

// webhookSecrets are the signing secrets a delivery may be signed with: the
// current one and, during a rotation, the previous one.
func webhookSecrets(cfg *config.Config) []string {
	secrets := []string{cfg.Gateway.WebhookSecret.Reveal()}
	if prev := cfg.Gateway.WebhookSecretPrevious.Reveal(); prev != "" {
		secrets = append(secrets, prev)
	}
	return secrets
}

// newWebhookVerifier builds the provider's webhook verifier and names the
// route its deliveries arrive on.
func newWebhookVerifier(cfg *config.Config) (gateway.WebhookVerifier, string, error) {
	switch cfg.Gateway.Provider {
	case config.ProviderWooshPay:
		v, err := wooshpay.NewWebhookVerifier(wooshpay.WebhookOptions{Secrets: webhookSecrets(cfg), Tolerance: cfg.Gateway.WebhookTolerance.D()})
		return v, "POST /webhooks/wooshpay", err
	case config.ProviderCheckout:
		// Cko-Signature carries no timestamp: a replayed delivery is
		// stopped only by its stored event id (webhook_events keeps every
		// id; nothing prunes them).
		v, err := checkout.NewWebhookVerifier(webhookSecrets(cfg))
		return v, "POST /webhooks/checkout", err
	}
	return nil, "", fmt.Errorf("no webhook verifier for provider %q", cfg.Gateway.Provider)
}
