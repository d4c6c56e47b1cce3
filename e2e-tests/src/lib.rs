//! Integration tests of docker-harness live in `tests/`; this crate has no code of its own.
