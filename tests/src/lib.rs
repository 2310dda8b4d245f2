//! End-to-end tests live in `it/` (one test binary, `--test it`); this crate has no code of its own.
