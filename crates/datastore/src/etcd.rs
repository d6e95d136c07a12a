//! The etcd v3 backend.
