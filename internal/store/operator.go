package store

import (
	"fmt"
	"time"

	"github.com/billingd/billingd/internal/models"
)

// Stopped is what StopCollection changed, for the action's audit row and
// its report to the operator.
type Stopped struct {
	// Voided is true when the invoice moved from open to void.
	Voided bool `json:"voided"`
	// CaseID is the dunning case closed as stopped (0 when none was open).
	CaseID int64 `json:"dunning_case,omitempty"`
	// CancelsRequested counts the intents waiting for the customer whose
	// cancel at the gateway was recorded (the intents job, or the action
	// itself, sends them).
	CancelsRequested int64 `json:"cancels_requested"`
	// LinksRevoked and EmailsCanceled count the pay links killed and the
	// queued emails that will not be sent.
	LinksRevoked   int64 `json:"links_revoked"`
	EmailsCanceled int64 `json:"emails_canceled"`
}

// StopCollection ends every way an invoice could still be collected, inside
// the caller's transaction: with void, an open invoice becomes void; its open
// dunning case is closed as stopped (with a step saying why); every intent of
// it waiting for the customer's authentication is marked for cancel at the
// gateway; its pay links are revoked; its queued emails are canceled. Without
// void the invoice stays open with nothing scheduled (`dunning stop`).
//
// An attempt whose outcome is still unknown cannot be canceled: it is left to
// settle, and a success that lands on a void invoice is refunded (see
// charge.ApplyToInvoice). A paid or written-off invoice is refused.
func (tx *Tx) StopCollection(now time.Time, invoiceID int64, detail string, void bool) (Stopped, error) {
	var out Stopped
	var inv models.Invoice
	if err := tx.db.Raw(`SELECT * FROM invoices WHERE id = ?`+tx.lockInvoiceSuffix(), invoiceID).Scan(&inv).Error; err != nil {
		return out, err
	}
	if inv.ID == 0 {
		return out, fmt.Errorf("store: stop collection: invoice %d not found", invoiceID)
	}
	if inv.Status != models.InvoiceOpen && !(inv.Status == models.InvoiceVoid && void) {
		return out, fmt.Errorf("store: stop collection: invoice %s is %s", inv.PublicID, inv.Status)
	}
	if void && inv.Status == models.InvoiceOpen {
		n, err := tx.exec(`UPDATE invoices SET status = 'void', next_attempt_at = NULL, updated_at = ? WHERE id = ? AND status = 'open'`, now, invoiceID)
		if err != nil {
			return out, err
		}
		out.Voided = n == 1
		tx.emitIf(out.Voided, models.EventInvoiceVoided, invoiceID)
		// A void invoice is no longer owed: a past_due subscription with no
		// other tried invoice open is active again, as after a payment.
		if out.Voided {
			if err := tx.ReactivateIfSettled(now, invoiceID); err != nil {
				return out, err
			}
		}
	} else if err := tx.db.Exec(`UPDATE invoices SET next_attempt_at = NULL, updated_at = ? WHERE id = ?`, now, invoiceID).Error; err != nil {
		return out, err
	}
	c, err := tx.CaseForInvoice(invoiceID)
	if err != nil {
		return out, err
	}
	if c != nil && c.Status == models.CaseOpen {
		// Closing a case as stopped has no event of its own: the
		// invoice.voided or subscription.canceled of the same action tells
		// it, and `dunning stop` alone changes nothing a merchant acts on.
		n, err := tx.exec(`UPDATE dunning_cases SET status = 'stopped', next_step_at = NULL, closed_at = ?, updated_at = ?
		                    WHERE id = ? AND status = 'open'`, now, now, c.ID)
		if err != nil {
			return out, err
		}
		if n == 1 {
			out.CaseID = c.ID
			if err := tx.AddCaseStep(now, c.ID, c.Step, models.StepStopped, detail); err != nil {
				return out, err
			}
		}
	}
	if out.CancelsRequested, err = tx.exec(`UPDATE charge_attempts SET cancel_requested_at = ?, cancel_reason = ?, updated_at = ?
	                    WHERE invoice_id = ? AND status = 'requires_action' AND cancel_requested_at IS NULL`,
		now, models.CancelInvoiceSettled, now, invoiceID); err != nil {
		return out, err
	}
	if out.LinksRevoked, err = tx.exec(`UPDATE pay_links SET revoked_at = ?, updated_at = ? WHERE invoice_id = ? AND revoked_at IS NULL AND expires_at > ?`,
		now, now, invoiceID, now); err != nil {
		return out, err
	}
	if out.EmailsCanceled, err = tx.exec(`UPDATE emails SET status = 'canceled', last_error = ?, updated_at = ?
	                    WHERE invoice_id = ? AND status = 'pending'`, truncate("stopped: "+detail, 500), now, invoiceID); err != nil {
		return out, err
	}
	return out, nil
}
