//! Limited-purpose tickets: each button of a card this app sends carries an
//! HMAC over the expense id, the recipient and an expiry, so a valid token
//! for someone else, or for another expense, cannot use it.
//!
//! Format: `v1.{expiry unix seconds}.{base64url HMAC-SHA256}`. The key is
//! derived from `SESSION_KEY` (HMAC of a fixed label), so it is never the
//! session key itself and instances that share `SESSION_KEY` agree.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Tickets live as long as Outlook lets anyone act on a message.
pub const TICKET_LIFETIME_SECS: i64 = 30 * 24 * 3600;

/// Why a ticket was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is malformed")]
    Malformed,
    #[error("the ticket has expired")]
    Expired,
    #[error("the ticket is for another expense or person")]
    Mismatch,
}

pub struct Tickets {
    key: hmac::Key,
}

impl Tickets {
    pub fn new(session_key: &[u8]) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, session_key);
        let tag = hmac::sign(&derive, b"outlook-inbox action ticket v1");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref()),
        }
    }

    fn mac(&self, expense_id: &str, recipient: &str, expiry: i64) -> hmac::Tag {
        // Length-prefixed fields: no two (expense, recipient) pairs sign the same bytes.
        let recipient = recipient.trim().to_lowercase();
        let mut msg = Vec::with_capacity(expense_id.len() + recipient.len() + 32);
        for field in [expense_id.as_bytes(), recipient.as_bytes()] {
            msg.extend_from_slice(&(field.len() as u64).to_be_bytes());
            msg.extend_from_slice(field);
        }
        msg.extend_from_slice(&expiry.to_be_bytes());
        hmac::sign(&self.key, &msg)
    }

    /// A ticket for `recipient` to act on `expense_id` until `now` + 30 days.
    pub fn issue(&self, expense_id: &str, recipient: &str, now: i64) -> String {
        let expiry = now.saturating_add(TICKET_LIFETIME_SECS);
        let tag = self.mac(expense_id, recipient, expiry);
        format!("v1.{expiry}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks that `ticket` lets `performer` act on `expense_id` at `now`.
    pub fn check(
        &self,
        ticket: &str,
        expense_id: &str,
        performer: &str,
        now: i64,
    ) -> Result<(), TicketError> {
        let mut parts = ticket.split('.');
        let (Some("v1"), Some(expiry), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TicketError::Malformed);
        };
        let expiry: i64 = expiry.parse().map_err(|_| TicketError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TicketError::Malformed)?;
        let expected = self.mac(expense_id, performer, expiry);
        verify_slices_are_equal(&mac, expected.as_ref()).map_err(|_| TicketError::Mismatch)?;
        if now > expiry {
            return Err(TicketError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_300_000;

    #[test]
    fn a_ticket_works_for_its_recipient_and_expense_only() {
        let t = Tickets::new(&[7u8; 64]);
        let ticket = t.issue("EXP-2026-000001", "AdeleV@contoso.com", NOW);
        assert_eq!(
            t.check(&ticket, "EXP-2026-000001", "adelev@contoso.com", NOW),
            Ok(())
        );
        assert_eq!(
            t.check(&ticket, "EXP-2026-000001", "alexw@contoso.com", NOW),
            Err(TicketError::Mismatch)
        );
        assert_eq!(
            t.check(&ticket, "EXP-2026-000002", "adelev@contoso.com", NOW),
            Err(TicketError::Mismatch)
        );
        let other_key = Tickets::new(&[8u8; 64]);
        assert_eq!(
            other_key.check(&ticket, "EXP-2026-000001", "adelev@contoso.com", NOW),
            Err(TicketError::Mismatch)
        );
    }

    #[test]
    fn a_ticket_expires_after_30_days_and_its_expiry_cannot_be_edited() {
        assert_eq!(TICKET_LIFETIME_SECS, 2_592_000, "30 days");
        let t = Tickets::new(&[7u8; 64]);
        let ticket = t.issue("EXP-1", "a@contoso.com", NOW);
        assert!(ticket.starts_with(&format!("v1.{}.", NOW + 2_592_000)));
        // The last second of the 30 days still works.
        assert_eq!(
            t.check(&ticket, "EXP-1", "a@contoso.com", NOW + 2_592_000),
            Ok(())
        );
        let later = NOW + TICKET_LIFETIME_SECS + 1;
        assert_eq!(
            t.check(&ticket, "EXP-1", "a@contoso.com", later),
            Err(TicketError::Expired)
        );
        let mut parts: Vec<&str> = ticket.split('.').collect();
        let extended = (NOW + 10 * TICKET_LIFETIME_SECS).to_string();
        parts[1] = &extended;
        assert_eq!(
            t.check(&parts.join("."), "EXP-1", "a@contoso.com", later),
            Err(TicketError::Mismatch)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let t = Tickets::new(&[7u8; 64]);
        for bad in [
            "",
            "v1",
            "v2.1.AAAA",
            "v1.x.AAAA",
            "v1.1.!!!",
            "v1.1.AA.extra",
        ] {
            assert_eq!(
                t.check(bad, "EXP-1", "a@contoso.com", NOW),
                Err(TicketError::Malformed),
                "{bad}"
            );
        }
    }
}
