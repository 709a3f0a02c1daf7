//! The listing suite (`suites/listing.rs`) on PostgreSQL.

const BACKEND: Backend = Backend::Postgres;
include!("suites/listing.rs");
