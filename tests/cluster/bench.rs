//! The benchmark only a real cluster can run (`RUNSECRETS_CLUSTER_BENCH=1`; not a timed test):
//!
//! - pod create → running for a pod declaring three secrets against the identical pod without,
//!   alternating, one pod at a time, medians and their ratio. "Running" two ways: the pod's
//!   phase as a client watching the API sees it (kubelet reports it after its next relist, every
//!   second, so these times come in steps of about one second), and the container's first
//!   output line, timestamped in nanoseconds by containerd's log (the start itself);
//! - webhook latency as the apiserver sees it (`apiserver_admission_webhook_admission_duration_seconds`
//!   from its /metrics) next to the server's own `runsecrets_admission_review_duration_seconds`,
//!   both taken as the difference over the benchmark's pods.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};

use crate::api::{http_get, pod};
use crate::say;
use crate::scenarios::pods::reader_annotation;
use crate::system::System;

const NS: &str = "bench";

fn rounds() -> usize {
    std::env::var("RUNSECRETS_CLUSTER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

pub fn run(system: &mut System) {
    system.k.ok(&["create", "namespace", NS], None);
    // The same secrets as the reader, in the bench namespace.
    for (name, value) in [
        ("db_password", &system.values.db),
        ("tls_key", &system.values.tls),
        ("api_token", &system.values.api),
    ] {
        let out = crate::api::run(
            std::process::Command::new(crate::system::exe())
                .env_clear()
                .env("KUBECONFIG", &system.env.kubeconfig)
                .args([
                    "secret",
                    "--store",
                    "kubernetes",
                    "-n",
                    NS,
                    "create",
                    name,
                    "-",
                ]),
            Some(value.as_bytes()),
        );
        assert!(out.ok, "bench secret {name}: {}", out.stderr);
    }
    let scrape = |port: u16| http_get(port, "/metrics").expect("metrics").1;
    let api_before = system.k.ok(&["get", "--raw", "/metrics"], None);
    let server_before = scrape(system.admin_port);
    let node_before = scrape(system.node_admin_port);

    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let samples = runtime.block_on(measure(system, rounds()));

    let api_after = system.k.ok(&["get", "--raw", "/metrics"], None);
    let server_after = scrape(system.admin_port);
    let node_after = scrape(system.node_admin_port);
    for (what, with, without) in [
        (
            "first output line",
            &samples.started_with,
            &samples.started_without,
        ),
        (
            "phase Running (watch)",
            &samples.running_with,
            &samples.running_without,
        ),
    ] {
        let (mw, mo) = (median(with), median(without));
        say(&format!(
            "  pod create → {what}, {} pods each, medians: with 3 secrets {:.0} ms, without {:.0} ms, difference {:+.0} ms, ratio {:.2}",
            with.len(),
            mw * 1e3,
            mo * 1e3,
            (mw - mo) * 1e3,
            mw / mo
        ));
        say(&format!("    with:    {}", millis(with)));
        say(&format!("    without: {}", millis(without)));
    }
    let apiserver = "apiserver_admission_webhook_admission_duration_seconds";
    let ours = "runsecrets_admission_review_duration_seconds";
    for (hook, apiserver_labels, endpoint) in [
        ("mutating", [("name", "mutate.runsecrets.io")], "mutate"),
        // Every validating entry the pods met (warn-default and audit-default).
        ("validating", [("type", "validating")], "validate"),
    ] {
        let seen = Histogram::delta(&api_before, &api_after, apiserver, &apiserver_labels);
        let own = Histogram::delta(
            &server_before,
            &server_after,
            ours,
            &[("endpoint", endpoint)],
        );
        // The apiserver's buckets start at 5 ms, so only its mean (sum / count) is precise.
        say(&format!(
            "  {hook} webhook calls: the apiserver sees n={} mean {:.2} ms ({:.0}% under 5 ms); the server's own /{endpoint} histogram n={} mean {:.3} ms, p50 ≈ {:.3} ms",
            seen.count,
            seen.mean() * 1e3,
            100.0 * seen.at_most(0.005) / seen.count,
            own.count,
            own.mean() * 1e3,
            own.quantile(0.5) * 1e3,
        ));
    }
    // Where the extra time of a pod with secrets goes on the node.
    for (what, text_before, text_after, name, labels) in [
        (
            "node plugin first publish (tmpfs, delivery call, files, remount)",
            &node_before,
            &node_after,
            "runsecrets_node_publish_duration_seconds",
            &[("kind", "publish")][..],
        ),
        (
            "server delivery (2 TokenReviews, 3 unseals)",
            &server_before,
            &server_after,
            "runsecrets_delivery_duration_seconds",
            &[][..],
        ),
    ] {
        let h = Histogram::delta(text_before, text_after, name, labels);
        say(&format!(
            "  {what}: n={} mean {:.2} ms, p50 ≈ {:.2} ms",
            h.count,
            h.mean() * 1e3,
            h.quantile(0.5) * 1e3
        ));
    }
}

#[derive(Default)]
struct Samples {
    started_with: Vec<f64>,
    started_without: Vec<f64>,
    running_with: Vec<f64>,
    running_without: Vec<f64>,
}

/// The container's first line in the CRI log: when the process wrote it (RFC 3339, ns).
fn first_line_time(log: &str) -> Option<SystemTime> {
    let stamp = log.lines().next()?.split(' ').next()?;
    let at =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = u64::try_from(at.unix_timestamp_nanos()).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// Seconds from create to the container's first line and to phase Running, for each pod.
async fn measure(system: &System, rounds: usize) -> Samples {
    let kubeconfig = Kubeconfig::read_from(&system.env.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let annotation = reader_annotation();
    let mut samples = Samples::default();
    // One warm-up of each, not counted; then alternate which goes first.
    for round in 0..=rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for secrets in order {
            let name = format!("{}-{round}", if secrets { "with" } else { "without" });
            let mut object = pod(NS, &name, secrets.then_some(annotation.as_str()));
            object["spec"]["containers"][0]["command"] = serde_json::json!([
                "sh",
                "-c",
                "echo started; trap 'exit 0' TERM; sleep 3600 & wait"
            ]);
            let object: Pod = serde_json::from_value(object).expect("pod");
            let (t0, wall0) = (Instant::now(), SystemTime::now());
            let created = pods
                .create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| panic!("create {name}: {e}"));
            let running = tokio::time::timeout(
                Duration::from_secs(60),
                await_condition(pods.clone(), &name, conditions::is_pod_running()),
            )
            .await;
            let seconds = t0.elapsed().as_secs_f64();
            assert!(
                matches!(running, Ok(Ok(Some(_)))),
                "{name} did not reach Running: {running:?}"
            );
            let log = pods
                .logs(
                    &name,
                    &LogParams {
                        timestamps: true,
                        ..LogParams::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("logs of {name}: {e}"));
            let started = first_line_time(&log)
                .and_then(|t| t.duration_since(wall0).ok())
                .unwrap_or_else(|| panic!("{name}: no timestamped first line in {log:?}"))
                .as_secs_f64();
            if round > 0 {
                let (s, r) = if secrets {
                    (&mut samples.started_with, &mut samples.running_with)
                } else {
                    (&mut samples.started_without, &mut samples.running_without)
                };
                s.push(started);
                r.push(seconds);
            }
            let uid = created.metadata.uid.clone().unwrap_or_default();
            pods.delete(&name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("delete {name}: {e}"));
            let _ = tokio::time::timeout(
                Duration::from_secs(60),
                await_condition(pods.clone(), &name, conditions::is_deleted(&uid)),
            )
            .await;
        }
    }
    samples
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn millis(values: &[f64]) -> String {
    values
        .iter()
        .map(|s| format!("{:.0}", s * 1e3))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A Prometheus histogram's change between two scrapes, summed over label sets that include
/// every `labels` pair.
struct Histogram {
    /// (upper bound, cumulative count), ascending.
    buckets: Vec<(f64, f64)>,
    count: f64,
    sum: f64,
}

impl Histogram {
    fn read(text: &str, name: &str, labels: &[(&str, &str)]) -> Histogram {
        let matches = |rest: &str| {
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        };
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let (mut count, mut sum) = (0.0, 0.0);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if !matches(rest) {
                continue;
            }
            if metric == format!("{name}_bucket") {
                let le = rest
                    .split("le=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .map(|s| {
                        if s == "+Inf" {
                            f64::INFINITY
                        } else {
                            s.parse().unwrap_or(f64::NAN)
                        }
                    })
                    .unwrap_or(f64::NAN);
                match buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some(bucket) => bucket.1 += value,
                    None => buckets.push((le, value)),
                }
            } else if metric == format!("{name}_count") {
                count += value;
            } else if metric == format!("{name}_sum") {
                sum += value;
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            count,
            sum,
        }
    }

    fn delta(before: &str, after: &str, name: &str, labels: &[(&str, &str)]) -> Histogram {
        let (b, mut a) = (
            Histogram::read(before, name, labels),
            Histogram::read(after, name, labels),
        );
        for bucket in &mut a.buckets {
            let earlier = b
                .buckets
                .iter()
                .find(|(le, _)| *le == bucket.0)
                .map_or(0.0, |x| x.1);
            bucket.1 -= earlier;
        }
        a.count -= b.count;
        a.sum -= b.sum;
        a
    }

    /// Observations of at most `le` (a bucket bound).
    fn at_most(&self, le: f64) -> f64 {
        self.buckets
            .iter()
            .find(|(b, _)| (*b - le).abs() < 1e-12)
            .map_or(f64::NAN, |(_, c)| *c)
    }

    fn mean(&self) -> f64 {
        self.sum / self.count
    }

    /// Linear interpolation inside the bucket, as PromQL's histogram_quantile.
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return lower.0;
                }
                let inside = cumulative - lower.1;
                let fraction = if inside > 0.0 {
                    (rank - lower.1) / inside
                } else {
                    1.0
                };
                return lower.0 + (le - lower.0) * fraction;
            }
            lower = (le, cumulative);
        }
        f64::NAN
    }
}
