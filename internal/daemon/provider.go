package daemon

import (
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

// provider is what the assembly needs to know of one gateway.provider, in
// one place: its client, its key policy (known without a client: the
// dry-run plan has no gateway secret), its webhook verifier and the route its
// deliveries arrive on.
type provider struct {
	client   func(g config.GatewayConfig) (GatewayClient, error)
	policy   gateway.KeyPolicy
	verifier func(cfg *config.Config) (gateway.WebhookVerifier, error)
	route    string
}

var providers = map[string]provider{
	config.ProviderWooshPay: {
		client: func(g config.GatewayConfig) (GatewayClient, error) {
			return wooshpay.New(wooshpay.Options{BaseURL: g.BaseURL, SecretKey: g.SecretKey.Reveal(), Timeout: g.Timeout.D()})
		},
		policy: wooshpay.Policy,
		verifier: func(cfg *config.Config) (gateway.WebhookVerifier, error) {
			return wooshpay.NewWebhookVerifier(wooshpay.WebhookOptions{Secrets: webhookSecrets(cfg), Tolerance: cfg.Gateway.WebhookTolerance.D()})
		},
		route: "POST /webhooks/wooshpay",
	},
	config.ProviderCheckout: {
		client: func(g config.GatewayConfig) (GatewayClient, error) {
			return checkout.New(checkout.Options{BaseURL: g.BaseURL, SecretKey: g.SecretKey.Reveal(), Timeout: g.Timeout.D()})
		},
		policy: checkout.Policy,
		// Cko-Signature carries no timestamp: a replayed delivery is
		// stopped only by its stored event id (webhook_events keeps every
		// id; nothing prunes them).
		verifier: func(cfg *config.Config) (gateway.WebhookVerifier, error) {
			return checkout.NewWebhookVerifier(webhookSecrets(cfg))
		},
		route: "POST /webhooks/checkout",
	},
}

// providerOf is gateway.provider's entry; Validate refuses any other value,
// so an unknown one is a FieldError naming the key.
func providerOf(cfg *config.Config) (provider, error) {
	p, ok := providers[cfg.Gateway.Provider]
	if !ok {
		return provider{}, &config.FieldError{Key: "gateway.provider", Value: cfg.Gateway.Provider, Message: "is not a provider this build knows"}
	}
	return p, nil
}

// NewGatewayClient builds the client of gateway.provider from the config's
// gateway keys: the daemon's, and the import's verification.
func NewGatewayClient(cfg *config.Config) (GatewayClient, error) {
	p, err := providerOf(cfg)
	if err != nil {
		return nil, err
	}
	return p.client(cfg.Gateway)
}

// keyPolicy is the idempotency-key policy of gateway.provider (zero for an
// unknown one: the biller then keeps schedule.DefaultKeyWindow).
func keyPolicy(cfg *config.Config) gateway.KeyPolicy { return providers[cfg.Gateway.Provider].policy }

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
	p, err := providerOf(cfg)
	if err != nil {
		return nil, "", err
	}
	v, err := p.verifier(cfg)
	return v, p.route, err
}
