//! The OpenAPI 3 document of the API, served at `/v1/openapi.json`. It is
//! generated from the handlers' `#[utoipa::path]` annotations while the
//! router is built from the same handlers, so it lists exactly the routes
//! served.

use super::error::ErrorBody;
use super::plugins::PluginSort;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The parts of the document no handler carries.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "jobhost",
        description = "A job server for WebAssembly jobs. Every route but health and this \
                       document takes a bearer token (or HTTP basic with the token as password); \
                       errors are {\"error\":{\"code\",\"message\"}}."
    ),
    modifiers(&BearerToken),
    security(("token" = [])),
    components(schemas(ErrorBody, PluginSort))
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme =
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build());
        doc.components.get_or_insert_default().add_security_scheme("token", scheme);
    }
}

/// The rendered document, set once when the router is built.
pub(super) static DOCUMENT: OnceLock<String> = OnceLock::new();

/// `GET /v1/openapi.json`: this document; no token needed.
#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "openapi_document", tag = "system", security(), responses((status = 200, description = "the OpenAPI 3 document")))]
pub async fn document() -> impl IntoResponse {
    let text = DOCUMENT.get().map_or("{}", String::as_str);
    ([(header::CONTENT_TYPE, "application/json")], text)
}
