//! A pod that declares secrets, created through the real apiserver: our mutating webhook (called
//! over TLS the apiserver trusts only through the caBundle the server published) adds the CSI
//! volume, kubelet asks our node plugin for it, and the containers read the files.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::{pod_mounts, volume_target};
use crate::api::{container, pod};
use crate::system::values::{API, DB, TLS};
use crate::system::{System, SHOP};

pub const READER: &str = "reader";

/// Short syntax, long syntax with owner and mode, and an absolute target outside /run/secrets.
pub fn reader_annotation() -> String {
    format!(
        "{DB}\nsource={TLS},target=tls/key.pem,uid=1000,gid=1000,mode=0400\nsrc={API},target=/etc/app/token,mode=0440\n"
    )
}

/// The reader's volume as its `app` container sees it without following links, as Swarm lays
/// it out: `(path, kind, mode, uid, gid, inode)` of each entry, from busybox `stat -c`.
pub fn layout(system: &System) -> Vec<[String; 6]> {
    let paths = [
        "/run/secrets/db_password",
        "/run/secrets/tls",
        "/run/secrets/tls/key.pem",
        "/run/secrets/.external/etc/app/token",
    ];
    let out = system.k.exec(
        SHOP,
        READER,
        "app",
        &format!("stat -c '%n|%F|%a|%u|%g|%i' {}", paths.join(" ")),
    );
    assert!(out.ok, "stat: {}", out.stderr);
    let rows: Vec<[String; 6]> = out
        .stdout
        .lines()
        .map(|l| {
            let f: Vec<String> = l.split('|').map(str::to_string).collect();
            f.try_into()
                .unwrap_or_else(|f: Vec<String>| panic!("stat line {f:?}"))
        })
        .collect();
    let shape: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| [&*r[0], &*r[1], &*r[2], &*r[3], &*r[4]])
        .collect();
    assert_eq!(
        shape,
        [
            ["/run/secrets/db_password", "regular file", "444", "0", "0"],
            ["/run/secrets/tls", "directory", "755", "0", "0"],
            [
                "/run/secrets/tls/key.pem",
                "regular file",
                "400",
                "1000",
                "1000"
            ],
            [
                "/run/secrets/.external/etc/app/token",
                "regular file",
                "440",
                "0",
                "0"
            ],
        ],
        "stat without -L: regular files with the declared owner and mode, a real directory"
    );
    // `ls -ln` as a user runs it: no link, no `..data`, nothing but the targets and the
    // service-account mount point.
    let ls = system
        .k
        .exec(SHOP, READER, "app", "ls -lna /run/secrets /run/secrets/tls");
    assert!(ls.ok, "ls: {}", ls.stderr);
    let mut names = Vec::new();
    for line in ls.stdout.lines() {
        let mut fields = line.split_whitespace();
        let (Some(perms), Some(name)) = (fields.next(), line.split_whitespace().last()) else {
            continue;
        };
        if perms.len() != 10 {
            continue; // "total N", a directory heading, a blank line
        }
        assert!(!perms.starts_with('l'), "a symlink in the volume: {line}");
        names.push(name.to_string());
    }
    names.sort();
    assert_eq!(
        names,
        [
            ".",
            ".",
            "..",
            "..",
            ".external",
            "db_password",
            "key.pem",
            "kubernetes.io",
            "tls"
        ],
        "ls -lna /run/secrets /run/secrets/tls:\n{}",
        ls.stdout
    );
    rows
}

pub fn reads_its_secrets(system: &mut System) {
    let k = &system.k;
    let mut spec = pod(SHOP, READER, Some(&reader_annotation()));
    // Containers running as the file's owner and as someone else.
    let mut owner = container("owner");
    owner["securityContext"] = json!({"runAsUser": 1000, "runAsGroup": 1000});
    let mut stranger = container("stranger");
    stranger["securityContext"] = json!({"runAsUser": 999, "runAsGroup": 999});
    spec["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .extend([owner, stranger]);
    let out = k.create(&spec);
    assert!(out.ok, "creating {READER}: {}", out.stderr);

    // The mutation the apiserver stored: it reached our webhook (failurePolicy Fail).
    let stored: Pod = k.pod(SHOP, READER);
    let annotations = stored.metadata.annotations.clone().unwrap_or_default();
    assert!(
        annotations
            .get("runsecrets.io/injected")
            .is_some_and(|d| d.starts_with("sha256:")),
        "the webhook marked the pod injected"
    );
    let pod_spec = stored.spec.clone().expect("spec");
    let volume = pod_spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "runsecrets")
        .expect("the webhook added the runsecrets volume");
    let csi = volume.csi.as_ref().expect("a CSI inline volume");
    assert_eq!(csi.driver, runsecrets::spec::DRIVER_NAME);
    assert_eq!(csi.read_only, Some(true));
    for c in &pod_spec.containers {
        let mounts = c.volume_mounts.clone().unwrap_or_default();
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/run/secrets" && m.read_only == Some(true)),
            "{}: /run/secrets mounted read-only",
            c.name
        );
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/etc/app/token" && m.sub_path.is_some()),
            "{}: the absolute target is a subPath mount",
            c.name
        );
    }

    k.wait_ready(SHOP, READER);
    let v = &system.values;
    assert_eq!(
        k.read(SHOP, READER, "app", "/run/secrets/db_password"),
        v.db
    );
    assert_eq!(
        k.read(SHOP, READER, "app", "/run/secrets/tls/key.pem"),
        v.tls
    );
    assert_eq!(k.read(SHOP, READER, "app", "/etc/app/token"), v.api);

    // Owner, group and mode as declared (defaults 0:0 0444), on the entries themselves: the
    // volume is laid out as Swarm does, regular files and real directories, no links.
    layout(system);
    let stat = k.exec(SHOP, READER, "app", "stat -c '%u:%g:%a' /etc/app/token");
    assert!(stat.ok, "stat: {}", stat.stderr);
    assert_eq!(
        stat.stdout, "0:0:440\n",
        "the subPath mount of the absolute target"
    );
    assert_eq!(
        k.read(SHOP, READER, "owner", "/run/secrets/tls/key.pem"),
        v.tls,
        "uid 1000 reads its 0400 file"
    );
    let denied = k.exec(SHOP, READER, "stranger", "cat /run/secrets/tls/key.pem");
    assert!(
        !denied.ok && denied.stderr.contains("Permission denied"),
        "uid 999 must not read a 0400 file of uid 1000: {denied:?}"
    );
    assert_eq!(
        k.read(SHOP, READER, "stranger", "/run/secrets/db_password"),
        v.db,
        "0444 is readable by anyone"
    );

    // kubelet's token mount lands inside the read-only volume (/var/run -> /run) and works.
    let ns = k.read(
        SHOP,
        READER,
        "app",
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
    );
    assert_eq!(ns, SHOP);
    let token = k.read(
        SHOP,
        READER,
        "app",
        "/run/secrets/kubernetes.io/serviceaccount/token",
    );
    assert!(token.starts_with("ey"), "a service-account token");

    // Read-only, in the container and on the host.
    let write = k.exec(SHOP, READER, "app", "echo x > /run/secrets/new");
    assert!(
        !write.ok && write.stderr.contains("Read-only file system"),
        "/run/secrets is writable: {write:?}"
    );
    let target = volume_target(system, &stored).display().to_string();
    let mounts = pod_mounts(system, &stored);
    let mount = mounts
        .iter()
        .find(|m| m.target == target)
        .unwrap_or_else(|| panic!("no mount at {target}: {mounts:?}"));
    assert_eq!(
        (mount.fstype.as_str(), mount.source.as_str()),
        ("tmpfs", "runsecrets")
    );
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            mount.options.iter().any(|o| o == option),
            "the volume's tmpfs lacks {option}: {:?}",
            mount.options
        );
    }
}
