//! What `runsecrets keys protect` tells the operator: what protects the keyring now, the
//! unlock key (once, for autolock), and how the server opens it from now on.

use crate::seal::protector::Protector;
use crate::store::keyring::Protected;

/// The report of `keys protect`; for autolock the only place the unlock key is ever shown.
pub fn protected_report(place: &str, done: &Protected, protector: &Protector) -> String {
    let what = if done.created {
        "created keyring"
    } else {
        "protected keyring"
    };
    let report = match protector {
        Protector::Pkcs11(config) => format!(
            "{what} {id} in {place}: wrapped by the AES key {key:?} of PKCS#11 token {token:?}; \
             the unwrapped keyring is replaced.\nStart the server with the same --pkcs11-module, \
             --pkcs11-token, --pkcs11-key and --pkcs11-pin-file.\n",
            id = done.keyring_id,
            key = config.key,
            token = config.token,
        ),
        Protector::Autolock(key) => format!(
            "{what} {id} in {place}: wrapped by an unlock key (autolock); the unwrapped keyring \
             is replaced.\n\nThe unlock key, shown this once: keep it safe. Without it no secret of \
             this keyring opens:\n\n    {key}\n\nA server with this keyring starts locked: \
             unlock it with `runsecrets unlock` (the key on standard input) or \
             --unlock-key-file.\n",
            id = done.keyring_id,
            key = key.reveal().as_str(),
        ),
    };
    if done.created {
        return report;
    }
    // Wrapping the same keys cannot reach the copies stored unwrapped before: freed disk
    // blocks, etcd's history, backups. Only new keys are free of them.
    report
        + "\nThese keys were stored unwrapped until now, and copies may survive in etcd's \
           history, backups or freed disk blocks. To be rid of them: `runsecrets keys rotate`, \
           `runsecrets secret reseal --all` (through the server), then `runsecrets keys retire` \
           each older key.\n"
}
