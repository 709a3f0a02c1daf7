//! The storage suite (`suites/storage.rs`) on PostgreSQL: a throwaway
//! cluster this process starts, a database per test.

const BACKEND: Backend = Backend::Postgres;
include!("suites/storage.rs");
