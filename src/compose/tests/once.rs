//! A file a conversion needs is read once, however many services need it. Shown with named
//! pipes: a pipe gives its text to one reader, and a second open for reading waits for a
//! writer that never comes, so a conversion that reads a file twice cannot finish.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rustix::fs::{FileType, Mode, OFlags, CWD};

use super::super::{convert, Conversion, Options};
use crate::seal::{Keyring, PublicKeys};

/// A pipe at `path` whose first reader gets `text`; the writer thread ends after it.
fn pipe_once(path: &Path, text: &'static str) {
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).expect("mkfifo");
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // Blocks until a reader opens the pipe.
        if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(&path) {
            let _ = w.write_all(text.as_bytes());
        }
    });
}

/// Runs the conversion under a deadline. When it passes, a reader waiting on one of `pipes`
/// is the conversion opening it again: it is let go (it reads nothing) and the test fails
/// naming the pipe.
fn convert_within(opts: Options, keys: PublicKeys, pipes: &[PathBuf]) -> Conversion {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(convert(&opts, &move || Ok(keys.clone())).map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(result) => return result.expect("converts"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the conversion panicked"),
        Err(mpsc::RecvTimeoutError::Timeout) => {}
    }
    let mut again = Vec::new();
    for pipe in pipes {
        // Opening a pipe to write without blocking succeeds only while a reader has it open.
        if rustix::fs::open(pipe, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty()).is_ok() {
            again.push(pipe.display().to_string());
        }
    }
    let _ = rx.recv_timeout(Duration::from_secs(20));
    panic!("the conversion did not finish: it opened {again:?} a second time");
}

fn project(dir: &Path, compose: &str) -> Options {
    let file = dir.join("compose.yaml");
    std::fs::write(&file, compose).expect("write");
    Options {
        files: vec![file],
        cwd: dir.to_path_buf(),
        ..Options::default()
    }
}

const EXTENDED: &str = "name: shop
services:
  a:
    extends: {file: base.yaml, service: web}
  b:
    extends: {file: ./base.yaml, service: web}
    environment: [MODE=b]
  c:
    extends: {file: sub/../base.yaml, service: web}
";

const BASE: &str = "services:
  web:
    image: example/web:1
    environment: [MODE=base, LOG_LEVEL=info]
";

/// Three services extend one file: it is read and parsed once, and the output is the same as
/// with the file read for each of them.
#[test]
fn an_extends_file_is_read_once_for_all_the_services_that_use_it() {
    let keys = Keyring::generate().public_keys().expect("keys");
    let plain = tempfile::tempdir().expect("dir");
    std::fs::create_dir(plain.path().join("sub")).expect("mkdir");
    std::fs::write(plain.path().join("base.yaml"), BASE).expect("write");
    let expected = convert(&project(plain.path(), EXTENDED), &|| Ok(keys.clone()))
        .expect("converts")
        .objects;
    assert_eq!(
        expected
            .iter()
            .filter(|o| o.yaml.contains("image: example/web:1"))
            .count(),
        3,
        "{expected:#?}"
    );

    let piped = tempfile::tempdir().expect("dir");
    std::fs::create_dir(piped.path().join("sub")).expect("mkdir");
    let base = piped.path().join("base.yaml");
    pipe_once(&base, BASE);
    let got = convert_within(project(piped.path(), EXTENDED), keys, &[base]);
    assert_eq!(got.objects, expected);
}

/// One secret file used by three services in two namespaces, and by a second definition
/// through a symbolic link: read once, and every sealed copy holds its bytes.
#[test]
fn a_secret_file_is_read_once_for_every_service_namespace_and_definition() {
    let ring = Keyring::generate();
    let dir = tempfile::tempdir().expect("dir");
    let pipe = dir.path().join("token.txt");
    pipe_once(&pipe, "the-token-value-8821");
    std::os::unix::fs::symlink("token.txt", dir.path().join("link.txt")).expect("symlink");
    let opts = project(
        dir.path(),
        "services:
  a: {image: example/a:1, secrets: [token]}
  b: {image: example/b:1, secrets: [token]}
  c:
    image: example/c:1
    secrets: [token, copy]
    x-runsecrets: {namespace: other}
secrets:
  token: {file: ./token.txt}
  copy: {file: ./link.txt}
",
    );
    let got = convert_within(opts, ring.public_keys().expect("keys"), &[pipe]);
    let mut sealed = Vec::new();
    for o in got.objects.iter().filter(|o| o.kind == "RunSecret") {
        let resource: crate::store::RunSecret = serde_norway::from_str(&o.yaml).expect("parses");
        let envelope = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &resource.spec.ciphertext,
        )
        .expect("base64");
        let value =
            crate::seal::open(&ring, &o.namespace, &resource.spec.name, &envelope).expect("opens");
        sealed.push((
            format!("{}/{}", o.namespace, resource.spec.name),
            String::from_utf8_lossy(&value).into_owned(),
        ));
    }
    sealed.sort();
    let value = "the-token-value-8821".to_string();
    assert_eq!(
        sealed,
        [
            ("default/token".to_string(), value.clone()),
            ("other/copy".to_string(), value.clone()),
            ("other/token".to_string(), value),
        ]
    );
}
