//! The CSI node plugin: secret files on a tmpfs, only in pods granted them.
