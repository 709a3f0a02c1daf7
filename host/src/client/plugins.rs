//! `jobhost plugin push|ls|show|rm|versions`, and the author's local tools
//! `jobhost plugin new|check` ([`crate::author`]), which need no server.

use super::format::{self, query, segment, text};
use super::http::Client;
use super::table::{Table, fields};
use super::{Output, print, render};
use crate::author::{self, Lang};
use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;
use std::path::PathBuf;

/// What to do with plugins.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Write a new plugin project into NAME/ (no server needed): a job, its
    /// unit test, a build script, a copy of the SDK and of the interface.
    New {
        /// The language of the project.
        #[arg(long, value_enum)]
        lang: Lang,
        /// The plugin's qualified name (`acme.reports.monthly`).
        name: String,
        /// Write the project here instead of NAME/.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a component before pushing it (no server needed): whether it
    /// fits the job world and the default limits, what it imports and
    /// exports, and how to fix a known mistake. Exit status 0 if it fits.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    #[command(flatten)]
    Server(ServerCommand),
}

/// What to do with the plugins of a server.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Upload a component as a new version of plugin NAME.
    Push {
        /// The qualified name to serve it under (`acme.reports.monthly`).
        name: String,
        /// The component (`.wasm`, built for wasm32-wasip2).
        file: PathBuf,
        /// Failure kinds its jobs retry unless a job says otherwise
        /// (`plugin_error,timeout`).
        #[arg(long)]
        retry_on: Option<String>,
    },
    /// The tenant's plugins and the shared ones.
    Ls {
        /// Text in the name.
        #[arg(long)]
        search: Option<String>,
    },
    /// One plugin: digest, size, imports and exports.
    Show { name: String },
    /// Its versions: the current one and those jobs still need.
    Versions { name: String },
    /// Remove the plugin, or only one of its versions.
    Rm {
        name: String,
        /// Only this version (its digest).
        #[arg(long)]
        version: Option<String>,
    },
}

/// Writes a new project and says what to run next.
pub fn new(lang: Lang, name: &str, dir: Option<&std::path::Path>) -> anyhow::Result<i32> {
    let (dir, next) = author::new_project(lang, name, dir)?;
    println!("wrote a {lang:?} plugin project for {name} in {}\nnext: {next}", dir.display());
    Ok(0)
}

/// Checks a component and prints the report; 1 if it does not fit.
pub fn check(file: &std::path::Path) -> anyhow::Result<i32> {
    let (report, fits) = author::check(file)?;
    print!("{report}");
    Ok(if fits { 0 } else { 1 })
}

/// Runs a command on a server's plugins.
pub async fn run(client: &Client, output: Output, command: ServerCommand) -> anyhow::Result<i32> {
    let path = |name: &str| format!("/v1/plugins/{}", segment(name));
    match command {
        ServerCommand::Push { name, file, retry_on } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let target = format!("{}{}", path(&name), query(&[("retry_on", retry_on)]));
            let plugin = client.upload(&target, bytes).await?;
            Ok(print(output, &plugin, |p| {
                format!("pushed {} {}\n", text(&p["name"]), text(&p["digest"]))
            }))
        }
        ServerCommand::Ls { search } => {
            let page = client
                .get(&format!(
                    "/v1/plugins{}",
                    query(&[("search", search), ("per_page", Some("200".into()))])
                ))
                .await?;
            Ok(print(output, &page, |page| {
                let mut table = Table::new(&["NAME", "SHARED", "DIGEST", "SIZE", "UPLOADED"]);
                for plugin in page["plugins"].as_array().into_iter().flatten() {
                    table.row(vec![
                        text(&plugin["name"]).into(),
                        text(&plugin["shared"]).into(),
                        format::digest(&plugin["digest"]).into(),
                        format::bytes(&plugin["size"]).into(),
                        format::ago(&plugin["uploaded_at"]).into(),
                    ]);
                }
                render(&table)
            }))
        }
        ServerCommand::Show { name } => {
            let plugin = client.get(&path(&name)).await?;
            Ok(print(output, &plugin, |p| {
                let list = |v: &Value| {
                    v.as_array()
                        .map(|items| items.iter().map(text).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                };
                fields(&[
                    ("name", text(&p["name"])),
                    ("shared", text(&p["shared"])),
                    ("digest", text(&p["digest"])),
                    ("size", format::bytes(&p["size"])),
                    ("uploaded", format::time(&p["uploaded_at"])),
                    ("uploader", text(&p["uploader"])),
                    ("imports", list(&p["imports"])),
                    ("exports", list(&p["exports"])),
                ])
            }))
        }
        ServerCommand::Versions { name } => {
            let versions = client.get(&format!("{}/versions", path(&name))).await?;
            Ok(print(output, &versions, |v| {
                let mut table = Table::new(&["DIGEST", "CURRENT", "JOBS", "SIZE", "UPLOADED"]);
                for version in v["versions"].as_array().into_iter().flatten() {
                    table.row(vec![
                        text(&version["digest"]).into(),
                        text(&version["current"]).into(),
                        text(&version["jobs"]).into(),
                        format::bytes(&version["size"]).into(),
                        format::ago(&version["uploaded_at"]).into(),
                    ]);
                }
                render(&table)
            }))
        }
        ServerCommand::Rm { name, version } => {
            let target = match &version {
                Some(digest) => format!("{}/versions/{}", path(&name), segment(digest)),
                None => path(&name),
            };
            let answer = client.call(Method::DELETE, &target, None).await?;
            Ok(print(output, &answer, |_| match &version {
                Some(digest) => format!("removed {name} {digest}\n"),
                None => format!("removed {name}\n"),
            }))
        }
    }
}
