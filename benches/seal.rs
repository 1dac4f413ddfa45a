//! Criterion benchmark of sealing and opening a 4 KiB secret in each suite, key encapsulation
//! included. The baselines run in the same process: one bare X25519 Diffie-Hellman (the least
//! any X25519 open must do) and one bare ML-KEM-768 decapsulation (with the Diffie-Hellman, the
//! least an X-Wing open must do), plus the ML-KEM-768 key expansion from its seed, which X-Wing
//! repeats in every decapsulation since its private key is the 32-byte seed.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ml_kem::ml_kem_768::DecapsulationKey;
use ml_kem::{Decapsulate, Seed};
use runsecrets::seal::{open, seal, Keyring, Suite};

fn seal_open(c: &mut Criterion) {
    let plaintext = vec![0x5au8; 4096];
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Bytes(plaintext.len() as u64));
    for suite in Suite::ALL {
        let ring = Keyring::generate_with(suite);
        let key = ring.newest().expect("a key");
        let envelope = seal(&key, "shop", "tls_key", &plaintext).expect("seals");
        group.bench_function(format!("seal-4KiB-{suite}"), |b| {
            b.iter(|| seal(&key, "shop", "tls_key", black_box(&plaintext)).expect("seals"))
        });
        group.bench_function(format!("open-4KiB-{suite}"), |b| {
            b.iter(|| open(&ring, "shop", "tls_key", black_box(&envelope)).expect("opens"))
        });
    }
    let secret = x25519_dalek::StaticSecret::from([7u8; 32]);
    let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([9u8; 32]));
    group.bench_function("x25519-dh-baseline", |b| {
        b.iter(|| secret.diffie_hellman(black_box(&peer)))
    });
    let seed = Seed::from([3u8; 64]);
    let dk = DecapsulationKey::from_seed(seed);
    let (ct, _) = dk
        .encapsulation_key()
        .encapsulate_deterministic(&[5u8; 32].into());
    group.bench_function("mlkem768-decap-baseline", |b| {
        b.iter(|| dk.decapsulate(black_box(&ct)))
    });
    group.bench_function("mlkem768-keygen-from-seed", |b| {
        b.iter(|| DecapsulationKey::from_seed(black_box(seed)))
    });
    group.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
