//! The file store survives SIGKILL in the middle of writes: after the crash it opens, every
//! completed secret is intact and opens, and no partial record is visible.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runsecrets::seal::Keyring;
use runsecrets::store::{FileStore, SecretRecord, Store};

const DIR_VAR: &str = "RUNSECRETS_CRASH_DIR";

fn value_for(name: &str) -> Vec<u8> {
    name.bytes().cycle().take(4096).collect()
}

/// The child: writes secrets until it is killed (bounded in count and time in case it is not).
#[test]
#[ignore = "run by crash_during_writes_loses_nothing_completed as a child process"]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let dir = Path::new(&dir);
    let ring = Keyring::generate();
    std::fs::write(
        dir.join("keyring.json"),
        ring.to_json().expect("json").as_bytes(),
    )
    .expect("keyring");
    let keys = ring.public_keys().expect("keys");
    let store = FileStore::open(dir).expect("store");
    let started = Instant::now();
    for i in 0..100_000 {
        let name = format!("s{i}");
        let record = SecretRecord::seal(
            &keys,
            "crash",
            &name,
            &value_for(&name),
            BTreeMap::new(),
            vec![],
        )
        .expect("seals");
        store.create(&record).expect("creates");
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
}

#[test]
fn crash_during_writes_loses_nothing_completed() {
    for round in 0..3u64 {
        let dir = tempfile::tempdir().expect("tmp");
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "store_crash::crash_child_writer",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("child starts");
        let store = FileStore::open(dir.path()).expect("store");
        let deadline = Instant::now() + Duration::from_secs(15);
        while store.list(Some("crash")).map(|l| l.len()).unwrap_or(0) < 20 + 10 * round as usize {
            assert!(Instant::now() < deadline, "child wrote too little");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(3 * round));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");

        let ring = Keyring::from_json(
            &std::fs::read_to_string(dir.path().join("keyring.json")).expect("keyring"),
        )
        .expect("keyring parses");
        let store = FileStore::open(dir.path()).expect("store opens after the crash");
        let records = store
            .list(Some("crash"))
            .expect("every visible record is complete");
        assert!(records.len() >= 20);
        for r in &records {
            let value = r
                .unseal(&ring, "crash", &r.name)
                .expect("a completed secret opens");
            assert_eq!(
                value.as_slice(),
                value_for(&r.name).as_slice(),
                "{}",
                r.name
            );
        }
        // Names are written in order: the visible ones have no gaps but at the end.
        let mut indices: Vec<usize> = records
            .iter()
            .map(|r| r.name[1..].parse().expect("index"))
            .collect();
        indices.sort_unstable();
        assert_eq!(indices, (0..indices.len()).collect::<Vec<_>>());

        // The next write removes what the killed writer left half-written.
        let record = SecretRecord::seal(
            &ring.public_keys().expect("keys"),
            "crash",
            "after",
            b"after-the-crash",
            BTreeMap::new(),
            vec![],
        )
        .expect("seals");
        store.create(&record).expect("writes after the crash");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("secrets/crash"))
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }
}
