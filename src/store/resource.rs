//! The `RunSecret` custom resource (group `runsecrets.io`, v1, namespaced): what the
//! Kubernetes backend stores in etcd and what `runsecrets seal` prints. Only ciphertext, its
//! key id, size and digest; the value is immutable, as a Swarm secret's is: only labels change,
//! and `secret reseal` may seal the same value to a newer key (see [`SPEC_RULE`]).

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The CEL rule on updates of the spec. A reseal seals the same plaintext to another key, which
/// changes exactly the sealing fields, together: `ciphertext`, `keyId`, and `digest` (a hash of
/// the envelope, never of the plaintext: a hash of a low-entropy password could be brute-forced).
/// Everything else stays equal: `name`, `serviceAccounts`, and `size`, the plaintext's length.
/// The apiserver can neither hash nor open an envelope, so this rule alone cannot prove the
/// value unchanged (a same-size value sealed under the name would pass it); it refuses every
/// change that is not a reseal's shape. The validating webhook does the rest on such an update
/// (`admission::runsecret`): the new envelope is checked as at creation (digest of that
/// ciphertext, key id and size as its header says, a key of the cluster) and must open to the
/// same value as the stored one.
pub const SPEC_RULE: &str = "self.name == oldSelf.name && self.size == oldSelf.size \
    && has(self.serviceAccounts) == has(oldSelf.serviceAccounts) \
    && (!has(self.serviceAccounts) || self.serviceAccounts == oldSelf.serviceAccounts)";

/// The message for any other change: a new value is a new secret, as in Swarm.
pub const SPEC_RULE_MESSAGE: &str =
    "a RunSecret's spec is immutable: store the new value as a new secret";

/// A sealed secret. Its value never changes (a new value is a new secret); `runsecrets secret
/// reseal` may seal the same value to a newer key.
// Several `printcolumn(type_ = ...)` entries are several columns, not a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[kube(
    group = "runsecrets.io",
    version = "v1",
    kind = "RunSecret",
    namespaced,
    shortname = "rsec",
    category = "runsecrets",
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size"),
    printcolumn(name = "Key", type_ = "string", json_path = ".spec.keyId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(SPEC_RULE).message(SPEC_RULE_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct RunSecretSpec {
    /// The secret's name as users write it (Swarm's rule: 1-64 of [a-zA-Z0-9-_.]); the
    /// object's own name is derived from it, since Kubernetes names allow no `_` or capitals.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// Base64 of the sealed envelope.
    pub ciphertext: String,
    /// Id of the sealing key: 16 hex digits of the SHA-256 of its public key.
    #[schemars(length(equal = 16))]
    pub key_id: String,
    /// Plaintext length in bytes (Swarm's limit: 1 to 500 KiB).
    #[schemars(range(min = 1, max = 511_999))]
    pub size: i64,
    /// `sha256:` of the envelope bytes (never of the plaintext).
    pub digest: String,
    /// When set, only pods running as one of these service accounts receive the secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
}

/// The object name for a secret name: the name itself when Kubernetes allows it, else a
/// lowercase form with a short hash, so `mysql_root_password` and `MYSQL-root-password` stay
/// distinct and every lookup is one GET.
pub fn object_name(secret_name: &str) -> String {
    let dns_ok = !secret_name.is_empty()
        && secret_name.len() <= 63
        && secret_name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && secret_name.as_bytes()[0].is_ascii_alphanumeric()
        && secret_name.as_bytes()[secret_name.len() - 1].is_ascii_alphanumeric();
    if dns_ok {
        return secret_name.to_string();
    }
    let base: String = secret_name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let base = base.trim_matches(|c| c == '-' || c == '.');
    let hash = Sha256::digest(secret_name.as_bytes());
    let suffix = crate::seal::hex(&hash[..4]);
    let keep = base.len().min(63 - 9);
    if keep == 0 {
        format!("secret-{suffix}")
    } else {
        format!("{}-{suffix}", base[..keep].trim_end_matches(['-', '.']))
    }
}

/// The CustomResourceDefinition as YAML, as committed in the chart.
pub fn crd_yaml() -> String {
    let mut crd = RunSecret::crd();
    // `helm uninstall` keeps the CRD, and with it every RunSecret: removing the add-on must not
    // delete the secrets.
    crd.metadata.annotations =
        Some([("helm.sh/resource-policy".to_string(), "keep".to_string())].into());
    let body = serde_norway::to_string(&crd).unwrap_or_default();
    format!("# Generated by `runsecrets crd` from src/store/resource.rs; do not edit.\n{body}")
}
