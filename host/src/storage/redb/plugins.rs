//! Plugin versions on redb: an upload adds a version and makes it current;
//! a version stays while it is current or unfinished jobs were enqueued with
//! it (a [`Counter::PluginRef`] kept by `apply`), and its component bytes stay
//! while any version of any plugin uses them.

use super::StorageError;
use super::index::{Counter, Txn};
use super::schema::{COMPONENTS, COUNTS, PLUGIN_VERSIONS, PLUGINS, decode, encode};
use crate::jobs::{PluginRecord, TenantDefaults};
use crate::storage::PluginVersion;
use ::redb::{ReadTransaction, ReadableTable};

/// The count of unfinished jobs enqueued with a version.
fn refs(tenant: &str, name: &str, digest: &str) -> Counter {
    Counter::PluginRef(tenant.into(), name.into(), digest.into())
}

/// Every version record of `tenant`'s plugin `name`.
fn version_records(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    tenant: &str,
    name: &str,
) -> Result<Vec<PluginRecord>, StorageError> {
    let mut records = Vec::new();
    for entry in table.range((tenant, name, "")..)? {
        let (key, value) = entry?;
        let (t, n, _) = key.value();
        if t != tenant || n != name {
            break;
        }
        records.push(decode(value.value())?);
    }
    Ok(records)
}

/// Deletes the bytes of `digest` once no version of any plugin uses them.
fn drop_unused_component(txn: &Txn, digest: &str) -> Result<(), StorageError> {
    for entry in txn.open_table(PLUGIN_VERSIONS)?.iter()? {
        if decode::<PluginRecord>(entry?.1.value())?.digest == digest {
            return Ok(());
        }
    }
    txn.open_table(COMPONENTS)?.remove(digest)?;
    Ok(())
}

/// Stores a new current version within the tenant's plugin quota, and
/// drops the older versions no unfinished job needs.
pub(super) fn put(
    txn: &Txn,
    record: &PluginRecord,
    component: &[u8],
    defaults: &TenantDefaults,
) -> Result<(), StorageError> {
    let mut plugins = txn.open_table(PLUGINS)?;
    let key = (record.tenant.as_str(), record.name.as_str());
    if plugins.get(key)?.is_none() {
        let mut count = 0;
        for entry in plugins.range::<(&str, &str)>((record.tenant.as_str(), "")..)? {
            if entry?.0.value().0 != record.tenant {
                break;
            }
            count += 1;
        }
        if count >= defaults.max_plugins {
            return Err(StorageError::OverQuota(format!(
                "tenant {:?} has {count} plugins, its quota; remove one first",
                record.tenant
            )));
        }
    }
    plugins.insert(key, encode(record).as_slice())?;
    drop(plugins);
    txn.open_table(COMPONENTS)?.insert(record.digest.as_str(), component)?;
    let mut versions = txn.open_table(PLUGIN_VERSIONS)?;
    let older = version_records(&*versions, &record.tenant, &record.name)?;
    let version = (record.tenant.as_str(), record.name.as_str(), record.digest.as_str());
    versions.insert(version, encode(record).as_slice())?;
    let mut unneeded = Vec::new();
    for old in older.into_iter().filter(|old| old.digest != record.digest) {
        if txn.count_of(&refs(&old.tenant, &old.name, &old.digest))? == 0 {
            versions.remove((old.tenant.as_str(), old.name.as_str(), old.digest.as_str()))?;
            unneeded.push(old.digest);
        }
    }
    drop(versions);
    for digest in unneeded {
        drop_unused_component(txn, &digest)?;
    }
    Ok(())
}

/// Removes a plugin with every version, unless unfinished jobs need one.
pub(super) fn remove(txn: &Txn, tenant: &str, name: &str) -> Result<PluginRecord, StorageError> {
    let mut plugins = txn.open_table(PLUGINS)?;
    let current: PluginRecord = match plugins.get((tenant, name))? {
        Some(value) => decode(value.value())?,
        None => return Err(StorageError::NotFound(format!("plugin {name:?}"))),
    };
    let versions = version_records(&*txn.open_table(PLUGIN_VERSIONS)?, tenant, name)?;
    let mut needed = 0;
    for version in &versions {
        needed += txn.count_of(&refs(tenant, name, &version.digest))?;
    }
    if needed > 0 {
        return Err(StorageError::Conflict(format!(
            "{needed} waiting or running jobs need plugin {name:?}; \
             cancel them or let them finish first"
        )));
    }
    plugins.remove((tenant, name))?;
    drop(plugins);
    let mut table = txn.open_table(PLUGIN_VERSIONS)?;
    for version in &versions {
        table.remove((tenant, name, version.digest.as_str()))?;
    }
    drop(table);
    for version in versions {
        drop_unused_component(txn, &version.digest)?;
    }
    Ok(current)
}

/// Removes one version that is neither current nor needed by a job.
pub(super) fn remove_version(
    txn: &Txn,
    tenant: &str,
    name: &str,
    digest: &str,
) -> Result<PluginRecord, StorageError> {
    let current = txn.open_table(PLUGINS)?.get((tenant, name))?.map(|v| v.value().to_vec());
    let current: Option<PluginRecord> = current.map(|v| decode(&v)).transpose()?;
    if current.is_some_and(|c| c.digest == digest) {
        return Err(StorageError::Conflict(format!(
            "{digest} is the current version of {name:?}: upload another or remove the plugin"
        )));
    }
    let needed = txn.count_of(&refs(tenant, name, digest))?;
    if needed > 0 {
        return Err(StorageError::Conflict(format!(
            "{needed} waiting or running jobs need version {digest} of {name:?}"
        )));
    }
    let removed = txn
        .open_table(PLUGIN_VERSIONS)?
        .remove((tenant, name, digest))?
        .map(|v| v.value().to_vec());
    let Some(removed) = removed else {
        return Err(StorageError::NotFound(format!("version {digest} of plugin {name:?}")));
    };
    drop_unused_component(txn, digest)?;
    decode(&removed)
}

/// The versions of `tenant`'s plugin `name`, oldest upload first, each
/// with the unfinished jobs that need it.
pub(super) fn versions(
    txn: &ReadTransaction,
    tenant: &str,
    name: &str,
) -> Result<Vec<PluginVersion>, StorageError> {
    let current = txn.open_table(PLUGINS)?.get((tenant, name))?.map(|v| v.value().to_vec());
    let current: Option<PluginRecord> = current.map(|v| decode(&v)).transpose()?;
    let Some(current) = current else {
        return Err(StorageError::NotFound(format!("plugin {name:?}")));
    };
    let counts = txn.open_table(COUNTS)?;
    let mut versions: Vec<PluginVersion> = Vec::new();
    for record in version_records(&txn.open_table(PLUGIN_VERSIONS)?, tenant, name)? {
        let jobs = refs(tenant, name, &record.digest).stored(&counts)?;
        let is_current = record.digest == current.digest;
        versions.push(PluginVersion { record, current: is_current, jobs });
    }
    versions.sort_by_key(|v| v.record.uploaded_at);
    Ok(versions)
}
