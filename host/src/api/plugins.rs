//! Plugins: upload a component under a qualified name (checked and compiled
//! before it is accepted), list, details, remove. A tenant sees its own
//! plugins and the shared ones the host loaded from its plugins folder.

use super::ApiState;
use super::auth::{Caller, CanOperate};
use super::body::{QueryParams, RawBody};
use super::error::{ApiError, ErrorBody};
use super::views::{PluginPage, PluginVersionView, PluginVersions, PluginView};
use crate::jobs::{FailureKind, PluginRecord};
use crate::runtime::{PluginError, PluginInfo, check_name};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The body of an upload: the component's bytes, documented as a binary
/// string so client generators send a file rather than a list of numbers.
#[derive(Debug)]
pub struct ComponentBytes;

impl utoipa::PartialSchema for ComponentBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        let binary = SchemaFormat::KnownFormat(KnownFormat::Binary);
        ObjectBuilder::new().schema_type(Type::String).format(Some(binary)).into()
    }
}

impl ToSchema for ComponentBytes {}

/// The view of `plugin` with its upload record among `records`.
fn view(plugin: &PluginInfo, records: &[PluginRecord]) -> PluginView {
    let record = records.iter().find(|r| plugin.tenant.is_some() && r.name == plugin.name);
    PluginView::new(plugin, record.map(|r| (r.uploaded_at, r.uploader.as_str())))
}

/// Query of an upload.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Failure kinds its jobs retry unless a job says otherwise, separated
    /// by commas (`plugin_error,timeout`); default: every kind but
    /// `cancelled`.
    retry_on: Option<String>,
}

impl UploadQuery {
    fn retry_on(&self) -> Result<Option<Vec<FailureKind>>, ApiError> {
        let Some(kinds) = &self.retry_on else { return Ok(None) };
        kinds
            .split(',')
            .filter(|kind| !kind.trim().is_empty())
            .map(|kind| {
                serde_json::from_value(serde_json::json!(kind.trim())).map_err(|_| {
                    ApiError::bad_request(format!("retry_on: {kind:?} is not a failure kind"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// `POST /v1/plugins/{name}` with the component as the body.
#[utoipa::path(post, path = "/v1/plugins/{name}", operation_id = "upload_plugin", tag = "plugins", params(("name" = String, Path, description = "qualified name, e.g. acme.reports.monthly"), UploadQuery), request_body(content = inline(ComponentBytes), content_type = "application/octet-stream", description = "the component (any content type is taken)"), responses((status = 201, description = "checked, compiled and stored: a new version", body = PluginView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn upload(
    State(state): State<Arc<ApiState>>,
    CanOperate(caller): CanOperate,
    Path(name): Path<String>,
    QueryParams(query): QueryParams<UploadQuery>,
    RawBody(bytes): RawBody,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    check_name(&name)?;
    let retry_on = query.retry_on()?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the body must be the component's bytes"));
    }
    // Checked and compiled first, stored next, made visible last: a store
    // that fails leaves the registry as it was. Compiles take turns, and a
    // compile the request stopped waiting for keeps its turn until it ends.
    let permit = state.compiles.clone().acquire_owned().await;
    let permit = permit.expect("the compile semaphore is never closed");
    let runtime = state.runtime.clone();
    let (tenant, plugin_name, component) = (caller.tenant.clone(), name.clone(), bytes.to_vec());
    let compile = tokio::task::spawn_blocking(move || {
        let registry = runtime.registry();
        let prepared = registry
            .check_footprint(&component)
            .and_then(|()| registry.prepare(Some(&tenant), &plugin_name, &component));
        drop(permit);
        prepared.map(|p| (p, component))
    });
    let timeout = state.config.compile_timeout;
    let (plugin, component) = tokio::time::timeout(timeout, compile)
        .await
        .map_err(|_| PluginError::CompileTimeout(timeout.as_millis() as u64))?
        .map_err(|e| ApiError::internal(format!("compiling the plugin: {e}")))??;
    let record = PluginRecord {
        tenant: caller.tenant.clone(),
        name: name.clone(),
        digest: plugin.digest.clone(),
        size: plugin.size as u64,
        uploaded_at: state.clock.now(),
        uploader: caller.name.clone(),
        retry_on,
        imports: plugin.imports.clone(),
        exports: plugin.exports.clone(),
    };
    state.storage.put_plugin(record.clone(), component).await?;
    let plugin = state.runtime.registry().insert(plugin);
    Ok((StatusCode::CREATED, Json(view(&plugin.info(), &[record]))))
}

/// `PUT /v1/plugins/{name}`: the same as `POST`, for clients that say PUT.
#[utoipa::path(put, path = "/v1/plugins/{name}", operation_id = "replace_plugin", tag = "plugins", params(("name" = String, Path, description = "qualified name, e.g. acme.reports.monthly"), UploadQuery), request_body(content = inline(ComponentBytes), content_type = "application/octet-stream", description = "the component (any content type is taken)"), responses((status = 201, description = "checked, compiled and stored: a new version", body = PluginView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn replace(
    state: State<Arc<ApiState>>,
    caller: CanOperate,
    name: Path<String>,
    query: QueryParams<UploadQuery>,
    body: RawBody,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    upload(state, caller, name, query, body).await
}

/// Query of the plugin list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    search: Option<String>,
    #[serde(default = "first_page")]
    page: usize,
    #[serde(default = "default_per_page")]
    per_page: usize,
    #[serde(default)]
    sort: PluginSort,
}

/// How the plugin list is ordered.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginSort {
    /// By qualified name.
    #[default]
    Name,
    /// Largest first.
    Size,
}

pub(super) fn first_page() -> usize {
    1
}

pub(super) fn default_per_page() -> usize {
    50
}

/// Checks `page` (from 1) and `per_page` (1..=1000); returns the offset.
pub(super) fn offset(page: usize, per_page: usize) -> Result<usize, ApiError> {
    if page == 0 {
        return Err(ApiError::bad_request("page starts at 1"));
    }
    if !(1..=1000).contains(&per_page) {
        return Err(ApiError::bad_request("per_page must be between 1 and 1000"));
    }
    Ok((page - 1) * per_page)
}

/// `GET /v1/plugins?search=&page=&per_page=&sort=name|size`.
#[utoipa::path(get, path = "/v1/plugins", operation_id = "list_plugins", tag = "plugins", params(ListQuery), responses((status = 200, description = "a page of plugins", body = PluginPage), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<PluginPage>, ApiError> {
    let start = offset(query.page, query.per_page)?;
    let mut plugins = state.runtime.registry().list_for(&caller.tenant);
    if let Some(text) = &query.search {
        let text = text.to_lowercase();
        plugins.retain(|p| p.name.contains(&text));
    }
    if let PluginSort::Size = query.sort {
        plugins.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    }
    let records = state.storage.plugins(Some(&caller.tenant)).await?;
    let total = plugins.len();
    let page = plugins.iter().skip(start).take(query.per_page).map(|p| view(p, &records));
    Ok(Json(PluginPage {
        plugins: page.collect(),
        total,
        page: query.page,
        per_page: query.per_page,
    }))
}

/// `GET /v1/plugins/{name}`.
#[utoipa::path(get, path = "/v1/plugins/{name}", operation_id = "get_plugin", tag = "plugins", params(("name" = String, Path, description = "qualified name")), responses((status = 200, description = "imports, exports, size, digest, upload time and uploader", body = PluginView), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn details(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    let plugin = state.runtime.registry().resolve(&caller.tenant, &name)?;
    let record = state.storage.plugin(&caller.tenant, &plugin.name).await?;
    Ok(Json(view(&plugin, record.as_slice())))
}

/// `GET /v1/plugins/{name}/versions`: the versions kept, oldest first: the
/// current one and those waiting or running jobs were enqueued with.
#[utoipa::path(get, path = "/v1/plugins/{name}/versions", operation_id = "plugin_versions", tag = "plugins", params(("name" = String, Path, description = "qualified name")), responses((status = 200, description = "the versions kept", body = PluginVersions), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn versions(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PluginVersions>, ApiError> {
    let plugin = state.runtime.registry().resolve(&caller.tenant, &name)?;
    let versions = match plugin.tenant {
        Some(_) => state
            .storage
            .plugin_versions(&caller.tenant, &name)
            .await?
            .into_iter()
            .map(|v| PluginVersionView {
                digest: v.record.digest,
                size: v.record.size,
                uploaded_at: Some(v.record.uploaded_at),
                uploader: Some(v.record.uploader),
                current: v.current,
                jobs: v.jobs,
            })
            .collect(),
        None => vec![PluginVersionView {
            digest: plugin.digest.clone(),
            size: plugin.size as u64,
            uploaded_at: None,
            uploader: None,
            current: true,
            jobs: 0,
        }],
    };
    Ok(Json(PluginVersions { name, versions }))
}

/// `DELETE /v1/plugins/{name}/versions/{digest}`: an old version no
/// waiting or running job needs (409 otherwise, with how many do).
#[utoipa::path(delete, path = "/v1/plugins/{name}/versions/{digest}", operation_id = "remove_plugin_version", tag = "plugins", params(("name" = String, Path, description = "qualified name"), ("digest" = String, Path, description = "the version's digest")), responses((status = 204, description = "removed"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn remove_version(
    State(state): State<Arc<ApiState>>,
    CanOperate(caller): CanOperate,
    Path((name, digest)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.storage.remove_plugin_version(&caller.tenant, &name, &digest).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/plugins/{name}`: the caller's tenant's own plugin.
#[utoipa::path(delete, path = "/v1/plugins/{name}", operation_id = "remove_plugin", tag = "plugins", params(("name" = String, Path, description = "qualified name")), responses((status = 204, description = "removed"), (status = "4XX", description = "error", body = ErrorBody)))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    CanOperate(caller): CanOperate,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Removed from the store first: a store that fails leaves the plugin
    // registered and stored, as it was.
    state.storage.remove_plugin(&caller.tenant, &name).await?;
    state.runtime.registry().remove_for(&caller.tenant, &name)?;
    Ok(StatusCode::NO_CONTENT)
}
