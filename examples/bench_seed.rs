//! Seeds the embedded decision store with expenses, for benchmarks.
//!
//! `cargo run --release --example bench_seed -- DATA_DIR COUNT`
//!
//! Every expense is addressed to john@contoso.com, the performer of the
//! stand-in's action tokens, so that decisions on them are allowed.
//!
//! Creates the store through the app's own code (schema, migrations), then
//! adds `COUNT` expenses `EXP-{this year}-000001…` in one transaction.

// A benchmark helper, not part of the product: it may panic on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use outlook_inbox::notifications::live::{hex, sha256};
use std::path::PathBuf;

use outlook_inbox::store::sqlite::{FILE_NAME, SqliteStore};
use outlook_inbox::store::{expense_id, year_of};

/// The stand-in's signed-in person (`tid/oid` of its ID tokens).
const BENCH_PERSON: &str =
    "9188040d-6c67-4c5b-b112-36a304b66dad/00000000-0000-0000-66f3-3332eca7ea81";
/// A subscription of theirs, and its clientState (test-only values; the
/// store keeps only the hash, as the app does).
const BENCH_SUBSCRIPTION: &str = "bench-subscription";
const BENCH_CLIENT_STATE: &str = "bench-client-state-test-only";

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("DATA_DIR"));
    let count: u64 = args.next().expect("COUNT").parse().expect("a number");
    drop(SqliteStore::open(&dir).expect("the store opens"));
    let mut conn = rusqlite::Connection::open(dir.join(FILE_NAME)).unwrap();
    let now = outlook_inbox::clock::now();
    let year = year_of(now);
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO expenses (id, year, seq, amount_cents, currency, submitter, purpose, recipient, created_at)
                 VALUES (?1, ?2, ?3, 4821, 'EUR', 'Bench Person', 'Benchmark', 'john@contoso.com', ?4)",
            )
            .unwrap();
        for n in 1..=count {
            insert
                .execute(rusqlite::params![expense_id(year, n), year, n as i64, now])
                .unwrap();
        }
    }
    // The bench person's Graph subscription, for `POST /notifications`.
    tx.execute(
        "INSERT INTO subscriptions (owner, id, client_state_hash, expires_at, mailbox) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            BENCH_PERSON,
            BENCH_SUBSCRIPTION,
            hex(&sha256(BENCH_CLIENT_STATE)),
            now + 3 * 24 * 3600,
            "bench@contoso.com"
        ],
    )
    .unwrap();
    tx.commit().unwrap();
    println!(
        "{count} expenses, EXP-{year}-000001 to {}",
        expense_id(year, count)
    );
}
