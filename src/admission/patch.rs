//! JSON Patch (RFC 6902) building. The apiserver applies our patch to the object it sent, so
//! every path must exist or be created by an earlier operation: `add /spec/volumes/-` fails on
//! a pod without `volumes`, which is what most pods look like before admission.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;

/// Collects patch operations under a prefix (empty for a Pod, `/spec/template` for a workload).
#[derive(Debug, Default)]
pub struct PatchBuilder {
    prefix: Vec<String>,
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    /// A builder whose paths are relative to `prefix`, a list of unescaped tokens.
    pub fn under(prefix: &[&str]) -> Self {
        Self {
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            ops: Vec::new(),
        }
    }

    fn pointer(&self, tokens: &[&str]) -> PointerBuf {
        PointerBuf::from_tokens(
            self.prefix
                .iter()
                .map(String::as_str)
                .chain(tokens.iter().copied()),
        )
    }

    /// Sets a member of an object; `tokens` are unescaped (`/` and `~` in keys are encoded).
    pub fn add(&mut self, tokens: &[&str], value: Value) {
        let path = self.pointer(tokens);
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    /// Appends items to an array, creating the array when the object has none.
    pub fn append(&mut self, tokens: &[&str], exists: bool, items: Vec<Value>) {
        if items.is_empty() {
            return;
        }
        if !exists {
            self.add(tokens, Value::Array(items));
            return;
        }
        let mut end: Vec<&str> = tokens.to_vec();
        end.push("-");
        for item in items {
            self.add(&end, item);
        }
    }

    pub fn build(self) -> Patch {
        Patch(self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_with_slash_and_tilde_are_escaped() {
        let mut b = PatchBuilder::under(&[]);
        b.add(
            &["metadata", "annotations", "runsecrets.io/in~jected"],
            json!("x"),
        );
        let text = serde_json::to_string(&b.build()).expect("serialises");
        assert!(
            text.contains("/metadata/annotations/runsecrets.io~1in~0jected"),
            "{text}"
        );
    }

    #[test]
    fn append_creates_a_missing_array_and_extends_an_existing_one() {
        let mut doc = json!({"spec": {"template": {"spec": {"volumes": [{"name": "a"}]}}}});
        let mut b = PatchBuilder::under(&["spec", "template"]);
        b.append(&["spec", "volumes"], true, vec![json!({"name": "b"})]);
        b.append(&["spec", "containers"], false, vec![json!({"name": "c"})]);
        json_patch::patch(&mut doc, &b.build()).expect("applies");
        assert_eq!(doc["spec"]["template"]["spec"]["volumes"][1]["name"], "b");
        assert_eq!(
            doc["spec"]["template"]["spec"]["containers"][0]["name"],
            "c"
        );
    }
}
