//! Unit tests of the Compose loader.
