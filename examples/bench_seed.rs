//! Seeds the embedded decision store with expenses, for benchmarks.
//!
//! `cargo run --release --example bench_seed -- DATA_DIR COUNT`
//!
//! Creates the store through the app's own code (schema, migrations), then
//! adds `COUNT` expenses `EXP-{this year}-000001…` in one transaction.

// A benchmark helper, not part of the product: it may panic on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use outlook_inbox::store::sqlite::{FILE_NAME, SqliteStore};
use outlook_inbox::store::{expense_id, year_of};

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
                 VALUES (?1, ?2, ?3, 4821, 'EUR', 'Bench Person', 'Benchmark', NULL, ?4)",
            )
            .unwrap();
        for n in 1..=count {
            insert
                .execute(rusqlite::params![expense_id(year, n), year, n as i64, now])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    println!(
        "{count} expenses, EXP-{year}-000001 to {}",
        expense_id(year, count)
    );
}
