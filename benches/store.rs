//! `secret ls` over 10,000 secrets in the file store (target: under 1 s). The baseline in the
//! same run is reading the same files' bytes without parsing them.

use std::collections::BTreeMap;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use runsecrets::seal::Keyring;
use runsecrets::store::{FileStore, SecretRecord, Store};

const COUNT: usize = 10_000;

fn read_all(dir: &Path) -> usize {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        total += std::fs::read(entry.path()).map(|b| b.len()).unwrap_or(0);
    }
    total
}

fn list(c: &mut Criterion) {
    // tmpfs when there is one: the setup's 10,000 fsyncs are not what is measured.
    let dir = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").expect("tmp")
    } else {
        tempfile::tempdir().expect("tmp")
    };
    let store = FileStore::open(dir.path()).expect("store");
    let keys = Keyring::generate().public_keys().expect("keys");
    let value = vec![7u8; 64];
    for i in 0..COUNT {
        let record = SecretRecord::seal(
            &keys,
            "bench",
            &format!("secret-{i:05}"),
            &value,
            BTreeMap::new(),
            vec![],
        )
        .expect("seals");
        store.create(&record).expect("creates");
    }
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.bench_function("ls-10000/baseline-read-bytes", |b| {
        b.iter(|| read_all(&dir.path().join("secrets/bench")))
    });
    group.bench_function("ls-10000", |b| {
        b.iter(|| assert_eq!(store.list(Some("bench")).expect("lists").len(), COUNT))
    });
    group.finish();
}

criterion_group!(benches, list);
criterion_main!(benches);
