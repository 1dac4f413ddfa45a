//! Criterion benchmark of sealing and opening a 4 KiB secret, key encapsulation included.
//! Sealing, measured in the same run, is the baseline for the opening figure, and so is one bare
//! X25519 Diffie-Hellman: the least any X25519 HPKE open must do.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use runsecrets::seal::{open, seal, Keyring};

fn seal_open(c: &mut Criterion) {
    let ring = Keyring::generate();
    let key = ring.newest().expect("a key");
    let plaintext = vec![0x5au8; 4096];
    let envelope = seal(&key, "shop", "tls_key", &plaintext).expect("seals");
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Bytes(plaintext.len() as u64));
    group.bench_function("seal-4KiB", |b| {
        b.iter(|| seal(&key, "shop", "tls_key", black_box(&plaintext)).expect("seals"))
    });
    group.bench_function("open-4KiB", |b| {
        b.iter(|| open(&ring, "shop", "tls_key", black_box(&envelope)).expect("opens"))
    });
    let secret = x25519_dalek::StaticSecret::from([7u8; 32]);
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32]));
    group.bench_function("x25519-dh-baseline", |b| {
        b.iter(|| secret.diffie_hellman(black_box(&peer)))
    });
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
