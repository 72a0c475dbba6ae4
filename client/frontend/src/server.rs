//! The IO shell: runs a [`crate::core::Core`] on sockets. SKELETON: the
//! server helper fills this in.
