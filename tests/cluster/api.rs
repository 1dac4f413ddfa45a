//! Driving the cluster as an operator does: kubectl (what a user types and reads, warnings and
//! refusals included), plus plain HTTP to the admin listeners of our processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::eventually;

/// A finished command.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with `stdin`, collecting both outputs.
pub fn run(command: &mut Command, stdin: Option<&[u8]>) -> Out {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for the command");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[derive(Clone)]
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Out {
        run(
            Command::new(&self.bin)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            stdin.map(str::as_bytes),
        )
    }

    /// Runs and requires success; stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(out.ok, "kubectl {} failed:\n{}", args.join(" "), out.stderr);
        out.stdout
    }

    /// `kubectl apply` of objects, as one List.
    pub fn apply(&self, objects: &[Value]) -> String {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        self.ok(&["apply", "-f", "-"], Some(&list.to_string()))
    }

    /// `kubectl create` of one object; the caller judges the outcome.
    pub fn create(&self, object: &Value) -> Out {
        self.run(&["create", "-f", "-"], Some(&object.to_string()))
    }

    pub fn get<T: DeserializeOwned>(&self, ns: Option<&str>, what: &str) -> Option<T> {
        let mut args = vec!["get", what, "-o", "json", "--ignore-not-found"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let out = self.ok(&args, None);
        if out.trim().is_empty() {
            return None;
        }
        Some(serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl get {what}: {e}")))
    }

    /// The objects of `kind` in `ns` matching a label selector.
    pub fn list<T: DeserializeOwned>(&self, ns: &str, kind: &str, selector: &str) -> Vec<T> {
        let out = self.ok(&["get", kind, "-n", ns, "-l", selector, "-o", "json"], None);
        let list: Value = serde_json::from_str(&out).expect("a list");
        serde_json::from_value(list["items"].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
    }

    pub fn pod(&self, ns: &str, name: &str) -> Pod {
        self.get(Some(ns), &format!("pod/{name}"))
            .unwrap_or_else(|| panic!("pod {ns}/{name} does not exist"))
    }

    /// Waits until the pod is Ready (all containers started), with the pod's events in the
    /// message when it does not get there.
    pub fn wait_ready(&self, ns: &str, name: &str) {
        let out = self.run(
            &[
                "wait",
                "-n",
                ns,
                &format!("pod/{name}"),
                "--for=condition=Ready",
                "--timeout=90s",
            ],
            None,
        );
        assert!(
            out.ok,
            "pod {ns}/{name} is not Ready: {}\nevents:\n{}",
            out.stderr,
            self.events(ns, name)
                .iter()
                .map(|(r, m)| format!("  {r}: {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// Deletes and waits until the object is gone.
    pub fn delete(&self, ns: &str, what: &str) {
        self.ok(
            &["delete", "-n", ns, what, "--wait=true", "--timeout=90s"],
            None,
        );
    }

    /// `sh -c script` in a container; the caller judges the outcome.
    pub fn exec(&self, ns: &str, pod: &str, container: &str, script: &str) -> Out {
        self.run(
            &[
                "exec", "-n", ns, pod, "-c", container, "--", "sh", "-c", script,
            ],
            None,
        )
    }

    /// Reads a file in a container; panics when it cannot.
    pub fn read(&self, ns: &str, pod: &str, container: &str, path: &str) -> String {
        let out = self.exec(ns, pod, container, &format!("cat {path}"));
        assert!(
            out.ok,
            "{ns}/{pod} ({container}) cannot read {path}: {}",
            out.stderr
        );
        out.stdout
    }

    /// (reason, message) of the events about `name`, oldest first.
    pub fn events(&self, ns: &str, name: &str) -> Vec<(String, String)> {
        let out = self.ok(
            &[
                "get",
                "events",
                "-n",
                ns,
                &format!("--field-selector=involvedObject.name={name}"),
                "-o",
                "json",
            ],
            None,
        );
        let list: Value = serde_json::from_str(&out).expect("event list");
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|e| {
                        (
                            e["reason"].as_str().unwrap_or_default().to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for an event about `name` with `reason` whose message contains `text`; returns
    /// that message.
    pub fn wait_event(&self, ns: &str, name: &str, reason: &str, text: &str) -> String {
        eventually(
            &format!("a {reason} event on {ns}/{name} saying {text:?}"),
            Duration::from_secs(60),
            Duration::from_millis(500),
            || {
                self.events(ns, name)
                    .into_iter()
                    .find(|(r, m)| r == reason && m.contains(text))
                    .map(|(_, m)| m)
            },
        )
    }
}

/// A pod as the tests write them: the kit runs only hostNetwork pods of its local images. The
/// shell exits on SIGTERM at once, so deletions do not wait out a grace period.
pub fn pod(ns: &str, name: &str, secrets: Option<&str>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 5,
            "containers": [container("app")],
        }
    });
    if let Some(secrets) = secrets {
        pod["metadata"]["annotations"] = json!({ runsecrets::spec::SECRETS_ANNOTATION: secrets });
    }
    pod
}

pub fn container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "localhost/busybox:1",
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
    })
}

/// GET over plain HTTP (the admin listeners): (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The sum of a Prometheus metric's samples whose labels include every `labels` pair.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
