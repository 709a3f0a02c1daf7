//! Requests to a jobhost server. Every answer that is not 2xx becomes a
//! [`ServerError`]: the HTTP status and the server's own message, one line.

use super::settings::Settings;
use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::fmt;

/// What the server refused, as it said it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ServerError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The error code of the body (`not_found`, `conflict`, ...), if any.
    pub code: Option<String>,
    /// The server's message, or the body as text.
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl ServerError {
    async fn from_response(response: reqwest::Response) -> ServerError {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let field =
            |name: &str| body.as_ref().and_then(|b| b["error"][name].as_str()).map(str::to_string);
        let message = field("message").unwrap_or_else(|| match text.trim() {
            "" => status.canonical_reason().unwrap_or("no message").to_string(),
            text => text.lines().next().unwrap_or_default().to_string(),
        });
        ServerError { status, code: field("code"), message }
    }
}

/// A server and the token to call it with.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server `settings` name.
    pub fn new(settings: &Settings) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Client { http, base: settings.base_url()?, token: settings.token.clone() })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request`; a 2xx answer is returned, anything else is a
    /// [`ServerError`].
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response =
            request.send().await.with_context(|| format!("cannot reach {}", self.base))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(ServerError::from_response(response).await.into())
        }
    }

    /// A JSON request with an optional JSON body; the JSON answer (`null`
    /// for an empty one).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        json(self.send(request).await?).await
    }

    /// `GET path`, as JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with raw bytes (a plugin upload).
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
        let request =
            self.request(Method::POST, path).header("content-type", "application/wasm").body(bytes);
        json(self.send(request).await?).await
    }

    /// `GET path` as an event stream, resuming after `last_event_id`.
    pub async fn events(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self.request(Method::GET, path).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        self.send(request).await
    }
}

async fn json(response: reqwest::Response) -> anyhow::Result<Value> {
    let text = response.text().await.context("reading the server's answer")?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).context("the server's answer is not JSON")
}
