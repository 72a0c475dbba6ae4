//! Lawful interception: warrants and the LEA tool.
//!
//! Not built yet: warrants, their verification by each provider and the LEA
//! reconstruction tool arrive with the LI issue. The crate exists so the
//! workspace layout matches `docs/ARCHITECTURE.md`.
