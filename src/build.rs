//! Build script: tells the crate whether SQLite is compiled in with the normal (variadic)
//! C bindings, where per-connection tuning such as turning off the lookaside allocator
//! can be called. Under libsqlite3-sys's `loadable_extension` (the `litestream-vfs`
//! extension, which calls its host's SQLite) or a system SQLite the cfg is absent and the
//! tuning is skipped.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sqlite_compiled_in)");
    println!("cargo::rerun-if-env-changed=DEP_SQLITE3_LIB_DIR");
    // libsqlite3-sys (`links = "sqlite3"`) reports `lib_dir` only when it compiled SQLite
    // itself (`bundled`), and never under `loadable_extension`.
    if std::env::var_os("DEP_SQLITE3_LIB_DIR").is_some() {
        println!("cargo::rustc-cfg=sqlite_compiled_in");
    }
}
