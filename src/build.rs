//! Build script: tells the crate whether SQLite is compiled in with the normal (variadic)
//! C bindings, where per-connection tuning such as turning off the lookaside allocator
//! can be called; and links a static, size-optimised `litestream` command (the edge
//! build) small.
//!
//! Under libsqlite3-sys's `loadable_extension` (the `litestream-vfs` extension, which
//! calls its host's SQLite) or a system SQLite the cfg is absent and the tuning is skipped.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sqlite_compiled_in)");
    println!("cargo::rustc-check-cfg=cfg(edge_link)");
    println!("cargo::rerun-if-env-changed=DEP_SQLITE3_LIB_DIR");
    println!("cargo::rerun-if-changed=src/edge.ld");
    // libsqlite3-sys (`links = "sqlite3"`) reports `lib_dir` only when it compiled SQLite
    // itself (`bundled`), and never under `loadable_extension`.
    if env::var_os("DEP_SQLITE3_LIB_DIR").is_some() {
        println!("cargo::rustc-cfg=sqlite_compiled_in");
    }
    edge_link();
}

/// The edge build (`--profile edge`: `opt-level = "z"`, `panic = "abort"`, with
/// `+crt-static`) links its binaries with relative relocations packed (`DT_RELR`, which
/// static glibc ≥ 2.36 applies itself) and without unwind tables, which nothing reads
/// when panics abort (`src/main.rs` refuses to build this way with unwinding panics).
/// 0.7 MiB of a 4.2 MiB binary; any other build links as usual.
fn edge_link() {
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let is_static = features.split(',').any(|f| f == "crt-static");
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !(is_static && linux_gnu && env::var("OPT_LEVEL").as_deref() == Ok("z")) {
        return;
    }
    println!("cargo::rustc-cfg=edge_link");
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    println!("cargo::rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    println!("cargo::rustc-link-arg-bins=-Wl,-T,{dir}/src/edge.ld");
    if glibc_applies_relr() {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C library linked in (the host's, when it is the target) is glibc 2.36 or
/// newer, whose static start-up code applies `DT_RELR` relocations; older ones would not.
fn glibc_applies_relr() -> bool {
    if env::var("HOST") != env::var("TARGET") {
        return false;
    }
    let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
    else {
        return false;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v = text.trim().trim_start_matches("glibc ").split('.');
    let major: u32 = v.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let minor: u32 = v.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (major, minor) >= (2, 36)
}
