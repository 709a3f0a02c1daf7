//! The `jobhost` binary; see [`jobhost::cli`].

use jobhost::cli::Command;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let status = Command::parse(std::env::args().skip(1))?.execute().await?;
    std::process::exit(status);
}
