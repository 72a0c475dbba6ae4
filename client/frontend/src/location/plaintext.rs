//! In-memory location service for comparison (plaintext mode). SKELETON.
