//! Every log of the run, read after all the scenarios: the kit's (kube-apiserver, kubelet,
//! etcd, controller-manager, scheduler, containerd, node-driver-registrar) and ours (server and
//! node plugin, with our crate at debug level). No secret value and no env literal of the run
//! may appear in any of them.

use crate::system::System;

pub fn no_secret_values(system: &mut System) {
    let logs = system.kit.logs();
    let mut names = Vec::new();
    let mut leaks = Vec::new();
    let secrets = system.values.all();
    for path in &logs {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
        for (i, value) in secrets.iter().enumerate() {
            // Multi-line values can be split by escaping: look for their longest line too.
            let longest = value.lines().max_by_key(|l| l.len()).unwrap_or(value);
            if text.contains(value.as_str()) || (longest.len() >= 12 && text.contains(longest)) {
                leaks.push(format!("{name} holds secret value #{i}"));
            }
        }
        names.push((name, text));
    }
    assert!(leaks.is_empty(), "{}", leaks.join("; "));

    // The scan looked at logs that saw the secrets pass: not at empty or missing files.
    let find = |prefix: &str| {
        names
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no {prefix}*.log among {logs:?}"))
    };
    assert!(
        find("server").contains("secret delivery"),
        "the server logged its deliveries"
    );
    assert!(find("node").contains("NodePublishVolume"));
    assert!(find("kubelet").contains("runsecrets.io"));
    assert!(!find("kube-apiserver").is_empty());
    crate::say(&format!("  scanned {} logs", names.len()));
}
