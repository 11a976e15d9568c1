//! Expense cards: the Adaptive Card (version 1.0, `Action.Http`) that a
//! decision refreshes, the limited-purpose tickets in its buttons, and the
//! email that carries it.

pub mod routes;
pub mod ticket;

/// The header Outlook shows the person (and, for MessageCards, saves with
/// the card); the action endpoints answer with it, the demo reads it.
pub const STATUS_HEADER: &str = "CARD-ACTION-STATUS";

/// A person may send at most this many test cards a minute.
pub const SENDS_PER_MINUTE: u32 = 10;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::store::{Decision, Expense, Recorded};

/// What a card needs besides the expense.
pub struct CardContext<'a> {
    /// `PUBLIC_URL` without a trailing slash.
    pub public_base: &'a str,
    /// The provider id (`ACTION_ORIGINATOR`).
    pub originator: &'a str,
    /// The recipient's ticket: in each button's body and in the
    /// `autoInvokeAction` body, so that refreshes pass `ACTION_REQUIRE_TICKET`.
    pub ticket: Option<&'a str>,
}

/// "€ 1,234.56"-style amount.
pub fn amount(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{currency} {grouped}.{:02}", cents % 100)
}

/// A decision time as the card shows it: `2026-12-03 18:09 UTC`.
pub fn when(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The card for `expense` in its current state: with Approve/Reject while it
/// waits for a decision, and showing the decision, who made it and when
/// (and no buttons) once it has one.
pub fn card(expense: &Expense, decision: Option<&Recorded>, ctx: &CardContext<'_>) -> Value {
    let api = format!("{}/api/expense", ctx.public_base);
    let mut refresh = json!({"expenseId": expense.id});
    if let Some(t) = ctx.ticket {
        refresh["ticket"] = Value::String(t.to_owned());
    }
    let mut body = vec![
        json!({"type": "TextBlock", "text": format!("Expense report {}", expense.id), "size": "Large", "weight": "Bolder", "wrap": true}),
        json!({"type": "FactSet", "facts": [
            {"title": "Amount", "value": amount(expense.amount_cents, &expense.currency)},
            {"title": "Submitted by", "value": expense.submitter},
            {"title": "Purpose", "value": expense.purpose},
            {"title": "Submitted", "value": when(expense.created_at)},
        ]}),
    ];
    let mut card = json!({
        "type": "AdaptiveCard",
        "version": "1.0",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "originator": ctx.originator,
        "hideOriginalBody": true,
        "autoInvokeAction": {
            "type": "Action.Http", "method": "POST", "url": format!("{api}/card"),
            "body": refresh.to_string(),
            "headers": [{"name": "Content-Type", "value": "application/json"}],
        },
    });
    match decision {
        Some(d) => {
            let (verb, color) = match d.decision {
                Decision::Approved => ("Approved", "Good"),
                Decision::Rejected => ("Rejected", "Attention"),
            };
            body.push(json!({
                "type": "TextBlock", "wrap": true, "weight": "Bolder", "color": color, "id": "decision",
                "text": format!("{verb} by {} on {}", d.performer, when(d.at)),
            }));
        }
        None => {
            body.push(json!({"type": "TextBlock", "text": "Waiting for your decision.", "wrap": true, "isSubtle": true}));
            let button = |title: &str, action: &str| {
                let mut payload = json!({"expenseId": expense.id, "action": action});
                if let Some(t) = ctx.ticket {
                    payload["ticket"] = Value::String(t.to_owned());
                }
                json!({
                    "type": "Action.Http", "title": title, "method": "POST", "url": api,
                    "body": payload.to_string(),
                    "headers": [{"name": "Content-Type", "value": "application/json"}],
                })
            };
            card["actions"] = json!([button("Approve", "approve"), button("Reject", "reject")]);
        }
    }
    card["body"] = Value::Array(body);
    card
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expense() -> Expense {
        Expense {
            id: "EXP-2026-000001".into(),
            amount_cents: 123_456,
            currency: "EUR".into(),
            submitter: "Megan Bowen".into(),
            purpose: "Customer visit, Lisbon".into(),
            recipient: Some("adelev@contoso.com".into()),
            created_at: 1_796_300_000,
        }
    }

    fn ctx(ticket: Option<&str>) -> CardContext<'_> {
        CardContext {
            public_base: "https://inbox.contoso.com",
            originator: "0f3c-provider",
            ticket,
        }
    }

    #[test]
    fn amounts_are_grouped() {
        assert_eq!(amount(123_456, "EUR"), "EUR 1,234.56");
        assert_eq!(amount(5, "USD"), "USD 0.05");
        assert_eq!(amount(100_000_000, "EUR"), "EUR 1,000,000.00");
        // Nothing is not negative; a credit is.
        assert_eq!(amount(0, "EUR"), "EUR 0.00");
        // No separator before the first digit, whatever the length.
        assert_eq!(amount(12_345, "EUR"), "EUR 123.45");
        assert_eq!(amount(12_345_678, "EUR"), "EUR 123,456.78");
        assert_eq!(amount(-1_050, "EUR"), "-EUR 10.50");
    }

    #[test]
    fn an_undecided_card_has_two_http_buttons_with_the_ticket() {
        let c = card(&expense(), None, &ctx(Some("t1")));
        assert_eq!(c["version"], "1.0");
        assert_eq!(c["originator"], "0f3c-provider");
        assert_eq!(
            c["autoInvokeAction"]["url"],
            "https://inbox.contoso.com/api/expense/card"
        );
        let actions = c["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 2);
        for a in actions {
            assert_eq!(a["type"], "Action.Http");
            assert_eq!(a["url"], "https://inbox.contoso.com/api/expense");
            let body: Value = serde_json::from_str(a["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["ticket"], "t1");
            assert_eq!(body["expenseId"], "EXP-2026-000001");
        }
        let refresh: Value =
            serde_json::from_str(c["autoInvokeAction"]["body"].as_str().unwrap()).unwrap();
        assert_eq!(refresh["ticket"], "t1");
        assert_eq!(refresh["expenseId"], "EXP-2026-000001");
    }

    #[test]
    fn a_decided_card_shows_who_and_when_and_has_no_buttons() {
        let d = Recorded {
            decision: Decision::Rejected,
            performer: "adelev@contoso.com".into(),
            at: 1_796_322_000,
            action_request_id: None,
            card_correlation_id: None,
        };
        let c = card(&expense(), Some(&d), &ctx(None));
        assert!(c.get("actions").is_none());
        let text = c["body"][2]["text"].as_str().unwrap();
        assert!(
            text.starts_with("Rejected by adelev@contoso.com on 2026-"),
            "{text}"
        );
    }
}
