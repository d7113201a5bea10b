//! The `litestream` command-line program.

fn main() -> std::process::ExitCode {
    litestream::cli::main()
}
