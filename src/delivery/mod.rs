//! The delivery API: node plugins ask for a pod's secrets, the server checks who is asking and
//! for which pod, unseals, and answers over TLS.

pub mod wire;
