//! Sanitizing message bodies: the 1 MB hostile thread, a 50 KB newsletter,
//! and every pathological shape of `mail::depth::pathological` at the 2 MiB
//! cap (each must stay within about 100 ms: the guard keeps the HTML5 tree
//! builder linear).
//!
//! `cargo bench --bench sanitize`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use outlook_inbox::demo::bodies;
use outlook_inbox::mail::depth::pathological;
use outlook_inbox::mail::sanitize::Sanitizer;

/// A newsletter of about `bytes` bytes (the demo's, repeated).
pub fn newsletter(bytes: usize) -> String {
    let one = bodies::newsletter("https://cdn.contoso.example", "M1", "Weekly");
    one.repeat(bytes / one.len() + 1)
}

fn bench(c: &mut Criterion) {
    let sanitizer = Sanitizer::new(None);
    let hostile = bodies::long_thread(1024 * 1024);
    assert!(hostile.len() >= 1024 * 1024);
    let news = newsletter(50 * 1024);
    let mut group = c.benchmark_group("sanitize");
    group.sample_size(20);
    group.bench_function("1 MB hostile thread", |b| {
        b.iter(|| sanitizer.clean(&hostile, false))
    });
    group.bench_function("50 KB newsletter", |b| {
        b.iter(|| sanitizer.clean(&news, false))
    });
    group.finish();
    let mut group = c.benchmark_group("pathological 2 MiB");
    group.sample_size(10);
    for (name, html) in pathological(2 * 1024 * 1024) {
        group.bench_function(name, |b| b.iter(|| sanitizer.clean(&html, false)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
