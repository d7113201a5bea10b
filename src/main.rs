//! The `litestream` command-line program.
#![deny(unsafe_code)]

// The edge link (src/build.rs) leaves the unwind tables out, which only a build whose
// panics abort can do without.
#[cfg(all(edge_link, not(panic = "abort")))]
compile_error!(
    "a static opt-level=\"z\" build links without unwind tables: build it with panic = \"abort\" (the `edge` profile)"
);

fn main() -> std::process::ExitCode {
    litestream::cli::main()
}
