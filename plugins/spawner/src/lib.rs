//! `tests.spawner`: spawns `count` children of plugin `job` with `args`
//! (each also given its number `n`) through `spawn`
//! (`jobhost:plugin@0.2.0`), and returns the ids it got and the errors of
//! those refused, so a test sees both.
use jobhost_sdk::{Result, export_job, info, spawn_with};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
struct Args {
    job: String,
    count: u32,
    #[serde(default)]
    args: Map<String, Value>,
    #[serde(default)]
    options: Map<String, Value>,
}

#[derive(Serialize)]
struct Spawned {
    children: Vec<String>,
    refused: Vec<String>,
}

fn spawner(args: Args) -> Result<Spawned> {
    let mut spawned = Spawned { children: vec![], refused: vec![] };
    for n in 0..args.count {
        let mut child = args.args.clone();
        child.insert("n".into(), json!(n));
        match spawn_with(&args.job, &child, &args.options) {
            Ok(id) => spawned.children.push(id),
            Err(refused) => spawned.refused.push(refused.to_string()),
        }
    }
    info(format!("{} spawned, {} refused", spawned.children.len(), spawned.refused.len()));
    Ok(spawned)
}

export_job!(spawner);
