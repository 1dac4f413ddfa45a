//! Criterion benchmarks of the pure review path, on the real apiserver fixtures. Each group
//! carries a baseline measured in the same run: parsing the same body into a
//! `serde_json::Value`, the least work any webhook must do. README reports medians and the
//! ratio to that baseline, since absolute times on shared machines drift.

#[path = "../tests/common/fixtures.rs"]
mod fixtures;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runsecrets::admission::{review, Endpoint};
use runsecrets::policy::{Level, Levels, Mode};
use runsecrets::spec;

fn reviews(c: &mut Criterion) {
    let cases = [
        (
            "mutate/pod-secrets-short",
            "pod-secrets-short.json",
            Endpoint::Mutate,
        ),
        (
            "mutate/pod-secrets-long",
            "pod-secrets-long.json",
            Endpoint::Mutate,
        ),
        (
            "validate/pod-env-literals",
            "pod-env-literals.json",
            Endpoint::Validate(Levels::only(Mode::Enforce, Level::Baseline)),
        ),
        (
            "validate/deployment-env-literal",
            "deployment-env-literal.json",
            Endpoint::Validate(Levels::only(Mode::Enforce, Level::Baseline)),
        ),
    ];
    let mut group = c.benchmark_group("review");
    for (name, file, endpoint) in cases {
        let body = fixtures::fixture_bytes(file);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name}/baseline-parse"), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).expect("json"))
        });
        group.bench_function(name, |b| {
            b.iter(|| review(endpoint, black_box(&body)).expect("answered"))
        });
    }
    group.finish();
}

fn annotation(c: &mut Criterion) {
    let value =
        "mysql_root_password\nsource=tls_key,target=tls/key.pem,uid=999,gid=999,mode=0400\n\
                 source=api_token,target=/etc/app/token,mode=0440\n";
    c.bench_function("spec/parse_secrets-3-entries", |b| {
        b.iter(|| spec::parse_secrets(black_box(value)).expect("valid"))
    });
}

criterion_group!(benches, reviews, annotation);
criterion_main!(benches);
