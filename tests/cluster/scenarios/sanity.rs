//! csi-sanity (kubernetes-csi/csi-test v5.4.0 with PRs 597/598, shipped with the kit) against
//! the registered node plugin, on the socket kubelet uses.

use crate::api;
use crate::system::System;

/// The specs that must run: the Identity service and every Node case a node-only driver with
/// inline volumes answers.
const MUST_RUN: [&str; 6] = [
    "Identity Service GetPluginInfo should return appropriate information",
    "Identity Service Probe should return appropriate information",
    "Node Service NodeGetCapabilities should return appropriate capabilities",
    "Node Service NodeGetInfo should return appropriate values",
    "Node Service NodePublishVolume should fail when no volume id is provided",
    "Node Service NodeUnpublishVolume should fail when no target path is provided",
];

pub fn node_suite(system: &mut System) {
    let socket = system
        .env
        .plugins_dir
        .join(runsecrets::spec::DRIVER_NAME)
        .join("csi.sock");
    let dir = system.work.join("sanity");
    // csi-sanity makes its mount and staging directories, but not their parent.
    std::fs::create_dir_all(&dir).expect("csi-sanity dir");
    let out = api::run(
        std::process::Command::new(system.env.bin.join("csi-sanity"))
            .arg(format!("--csi.endpoint={}", socket.display()))
            .arg(format!("--csi.mountdir={}", dir.join("mount").display()))
            .arg(format!(
                "--csi.stagingdir={}",
                dir.join("staging").display()
            ))
            .arg("--ginkgo.no-color")
            .arg("--ginkgo.v")
            // No Controller service (inline volumes only), and "should remove target path"
            // needs CreateVolume from one.
            .arg(r"--ginkgo.skip=\[Controller.Server\]|should remove target path"),
        None,
    );
    let summary = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Ran ") || l.contains("Passed |"))
        .collect::<Vec<_>>()
        .join("; ");
    // The first failure's details, not the list of every failed spec.
    let first_failure: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("[FAILED]"))
        .take(15)
        .collect();
    assert!(
        out.ok,
        "csi-sanity failed: {summary}\n{}",
        first_failure.join("\n")
    );
    let ran: usize = summary
        .strip_prefix("Ran ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(ran >= 10, "only {ran} specs ran: {summary}");
    let text = out.stdout.replace(" [It]", "");
    for spec in MUST_RUN {
        assert!(text.contains(spec), "{spec:?} did not run: {summary}");
    }
    crate::say(&format!("  csi-sanity: {summary}"));
}
