//! Prints the folder of the built `examples.*` components, for scripts that start the
//! host with them (`jobhost serve --plugins "$(cargo run -p jobhost-plugin-artifacts)"`).

fn main() {
    println!("{}", jobhost_plugin_artifacts::EXAMPLES_DIR);
}
