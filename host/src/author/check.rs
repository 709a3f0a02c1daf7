//! `jobhost plugin check FILE`: whether a component fits this host, what it
//! imports and exports, and the fix for a known mistake, before it is
//! pushed anywhere.

use crate::config::Config;
use crate::runtime::{Inspection, Runtime, RuntimeConfig};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::Path;

/// Checks the component at `path` against a host with the default
/// settings (not the `JOBHOST_*` variables of this shell); returns the
/// report for a person and whether it fits. The pool has one slot, so its
/// own bounds (memories and tables per component) are checked too.
pub fn check(path: &Path) -> anyhow::Result<(String, bool)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::default().runtime();
    let runtime = Runtime::new(RuntimeConfig { cache_dir: None, pool_slots: Some(1), ..config })?;
    let mut report = format!("{}: {:.1} MB\n", path.display(), bytes.len() as f64 / 1e6);
    let fits = match runtime.registry().inspect(&bytes) {
        Ok(Inspection { imports, exports, fits }) => {
            writeln!(report, "imports:")?;
            for name in &imports {
                writeln!(report, "  {name}")?;
            }
            writeln!(report, "exports:")?;
            for name in &exports {
                writeln!(report, "  {name}")?;
            }
            fits
        }
        Err(error) => Err(error),
    };
    match &fits {
        Ok(()) => writeln!(report, "fits jobhost:plugin/job@0.1.0: it can be pushed and run")?,
        Err(error) => writeln!(report, "does not fit: {error}")?,
    }
    Ok((report, fits.is_ok()))
}
