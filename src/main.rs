//! The `taskbench` command: everything lives in the library; this only sets the exit code.

fn main() {
    std::process::exit(taskbench::cli::main());
}
