//! Criterion benchmark of `compose convert` on a generated project: 100 services with 5 file
//! secrets each (500 secrets of 64 bytes, each its own file), loading, interpolation, sealing
//! and building every object included (writing excluded). The baseline, in the same run, seals
//! the same 500 values alone into RunSecret objects, the least a conversion must do.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use runsecrets::compose::{self, Environment};
use runsecrets::seal::Keyring;

const SERVICES: usize = 100;
const SECRETS_PER_SERVICE: usize = 5;

/// Writes the project; returns the secret names and values.
fn project(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut compose = String::from("x-base: &base\n  user: \"1000:1000\"\n  environment:\n    LOG_LEVEL: ${LOG_LEVEL:-info}\nservices:\n");
    let mut top = String::from("secrets:\n");
    let mut values = Vec::new();
    std::fs::create_dir_all(dir.join("secrets")).expect("secrets dir");
    for s in 0..SERVICES {
        compose.push_str(&format!(
            "  svc{s}:\n    <<: *base\n    image: example/svc{s}:1.${{MINOR:-0}}\n    ports: [\"{}:80\"]\n    secrets:\n",
            8000 + s
        ));
        for k in 0..SECRETS_PER_SERVICE {
            let name = format!("svc{s}_secret{k}");
            compose.push_str(&format!(
                "      - source: {name}\n        target: app/{name}\n        mode: 0400\n"
            ));
            top.push_str(&format!("  {name}:\n    file: ./secrets/{name}.txt\n"));
            let value = format!("{name}-{:0>50}", s * 10 + k).into_bytes();
            std::fs::write(dir.join("secrets").join(format!("{name}.txt")), &value)
                .expect("secret file");
            values.push((name, value));
        }
    }
    compose.push_str(&top);
    std::fs::write(dir.join("compose.yaml"), compose).expect("compose file");
    values
}

fn convert(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let values = project(dir.path());
    let keys = Keyring::generate().public_keys().expect("public keys");
    let opts = compose::Options {
        cwd: dir.path().to_path_buf(),
        namespace: Some("bench".into()),
        os_env: Environment::default(),
        ..compose::Options::default()
    };
    let source = || Ok(keys.clone());
    // The conversion must produce what is measured: 100 workloads, 100 Services, 500 secrets.
    let done = compose::convert(&opts, &source).expect("converts");
    assert_eq!(
        done.objects.len(),
        SERVICES * 2 + SERVICES * SECRETS_PER_SERVICE
    );

    let mut group = c.benchmark_group("compose");
    group.sample_size(20);
    group.bench_function("convert-100-services-500-secrets", |b| {
        b.iter(|| compose::convert(black_box(&opts), &source).expect("converts"))
    });
    group.bench_function("seal-500-secrets-baseline", |b| {
        b.iter(|| {
            for (name, value) in &values {
                let r = runsecrets::secrets::sealed_resource(
                    &keys,
                    "bench",
                    name,
                    black_box(value),
                    Default::default(),
                    Vec::new(),
                )
                .expect("seals");
                black_box(r);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, convert);
criterion_main!(benches);
