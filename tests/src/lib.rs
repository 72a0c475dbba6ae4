//! End-to-end tests of sharecall with real processes; see `tests/tests/`.
