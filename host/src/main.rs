//! The `jobhost` binary; see [`jobhost::cli`].

use jobhost::cli::Invocation;
use jobhost::config::LogFormat;

/// mimalloc: about 7% more jobs a second end to end than glibc's malloc
/// under many small allocations per job (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let invocation = Invocation::from_args().unwrap_or_else(|e| fail(&e));
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match invocation.log_format() {
        LogFormat::Json => log.json().init(),
        LogFormat::Text => {
            log.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init()
        }
    }
    let status = invocation.execute().await.unwrap_or_else(|e| fail(&e));
    std::process::exit(status);
}

/// Ends the process with the error's chain on one line, for the operator.
fn fail(error: &anyhow::Error) -> ! {
    eprintln!("jobhost: {error:#}");
    std::process::exit(2);
}
