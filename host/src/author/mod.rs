//! Tools for plugin authors that need no server: `jobhost plugin new`
//! writes a project that builds to a component out of the box, and
//! `jobhost plugin check` says whether a component fits this host and, for
//! a known mistake, how to fix it.

mod check;
mod scaffold;

pub use check::check;
pub use scaffold::{Lang, new_project};
