//! `tests.command`: a plain WASI program (`fn main`), the usual mistake of a
//! plugin author who ran `cargo new` without `--lib`. It exports
//! `wasi:cli/run`, not `run`, so the host must refuse it by name.

fn main() {
    println!("I am a command, not a job");
}
