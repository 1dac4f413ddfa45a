use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;

use super::*;
use crate::seal::Keyring;

const HOUR: Duration = Duration::from_secs(3600);

fn write_keyring(dir: &Path, text: &str) {
    let path = dir.join("keyring.json");
    std::fs::write(&path, text).expect("keyring");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("mode");
}

/// A stored plain keyring whose key list is `ring`'s but whose private key is another one:
/// opening it fails (the key no longer matches its id), listing it does not.
fn store_with_a_broken_private_key(dir: &Path, ring: &Keyring) {
    let mut value: serde_json::Value =
        serde_json::from_str(&ring.to_json().expect("json")).expect("json");
    value["keys"][0]["private"] = base64::engine::general_purpose::STANDARD
        .encode([7u8; 32])
        .into();
    write_keyring(dir, &value.to_string());
}

/// A check where nothing is due and nothing changed decides from the key list alone: the
/// stored private key is not even valid, and the check neither fails nor notices.
#[tokio::test]
async fn a_check_with_nothing_due_opens_no_private_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let ring = Keyring::generate();
    let live = LiveKeyring::open(ring.clone(), None).expect("live");
    store_with_a_broken_private_key(dir.path(), &ring);
    let place = KeyringPlace::File(dir.path().to_path_buf());

    // Start-up's check, from the keys just loaded, and a later one, from the stored list.
    assert_eq!(
        check(&place, &live, HOUR, None).await.expect("start-up"),
        Checked::Unchanged
    );
    let stored = read_listing(&place).await.expect("listed");
    assert_eq!(
        check(&place, &live, HOUR, Some(stored.clone()))
            .await
            .expect("tick"),
        Checked::Unchanged
    );
    // The same check when the key is due has to open the keyring, and this one does not open:
    // so the checks above did not open it.
    let e = check(&place, &live, Duration::from_nanos(1), Some(stored))
        .await
        .expect_err("opening a broken key");
    assert!(
        crate::error::Chain(&e)
            .to_string()
            .contains("does not match its id"),
        "{}",
        crate::error::Chain(&e)
    );
    assert_eq!(live.public_keys().keys.len(), 1);
}

/// A due key is renewed (one new key, served at once), and a key added elsewhere is taken in.
#[tokio::test]
async fn a_due_key_is_renewed_and_a_change_elsewhere_is_followed() {
    let dir = tempfile::tempdir().expect("tmp");
    let ring = Keyring::generate();
    let mut value: serde_json::Value =
        serde_json::from_str(&ring.to_json().expect("json")).expect("json");
    value["keys"][0]["created"] = "2020-01-01T00:00:00Z".into();
    write_keyring(dir.path(), &value.to_string());
    let place = KeyringPlace::File(dir.path().to_path_buf());
    let aged = match crate::store::keyring::run_file(&place, place.load(None)).expect("loads") {
        crate::store::keyring::Loaded::Open { ring, .. } => ring,
        other => panic!("{other:?}"),
    };
    let live = LiveKeyring::open(aged, None).expect("live");

    let renewed = check(&place, &live, HOUR, None).await.expect("renewed");
    assert_eq!(
        renewed,
        Checked::Opened {
            written: true,
            changed: true
        }
    );
    assert_eq!(live.public_keys().keys.len(), 2);
    assert_eq!(read_listing(&place).await.expect("listed").len(), 2);
    // Nothing due now.
    let stored = read_listing(&place).await.expect("listed");
    assert_eq!(
        check(&place, &live, HOUR, Some(stored))
            .await
            .expect("tick"),
        Checked::Unchanged
    );

    // `keys rotate` elsewhere: the next check follows it without writing.
    crate::store::keyring::run_file(&place, place.rotate(&Opener::Plain, Duration::ZERO, None))
        .expect("rotated elsewhere");
    let stored = read_listing(&place).await.expect("listed");
    assert_eq!(
        check(&place, &live, HOUR, Some(stored))
            .await
            .expect("tick"),
        Checked::Opened {
            written: false,
            changed: true
        }
    );
    assert_eq!(live.public_keys().keys.len(), 3);
}

/// A renewal whose task died says it was renewing, not reading.
#[tokio::test]
async fn a_failed_task_names_its_step() {
    let dir = tempfile::tempdir().expect("tmp");
    let place = KeyringPlace::File(dir.path().to_path_buf());
    let e = blocking::<()>(&place, "renewing", || panic!("the task died"))
        .await
        .expect_err("the task panicked");
    assert_eq!(
        e.to_string(),
        format!("renewing the keyring {}", place.describe())
    );
}
