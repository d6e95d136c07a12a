//! The embedded backend: one SQLite file that every process on a machine shares.
