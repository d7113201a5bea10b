//! `litestream restore -json` prints what the official 0.5.17 prints for the same replica:
//! the same summary after a restore (only `duration_ms` differs), the same plan with
//! `-dry-run`, and nothing on stdout when the restore fails or is skipped.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// `restore ARGS` run by `cmd` in `dir` (outputs are relative to it, as the official
/// prints the `-o` path as given): (ok, stdout with `duration_ms` blanked, stderr).
fn restore_json(mut cmd: Command, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let (ok, out, err) = run(cmd
        .current_dir(dir)
        .env_remove("LITESTREAM_CONFIG")
        .arg("restore")
        .args(args));
    let out = out
        .lines()
        .map(|l| match l.split_once("\"duration_ms\": ") {
            Some((head, ms)) => {
                let ms = ms.trim_end_matches(',');
                assert!(ms.parse::<u64>().is_ok(), "duration_ms is a number: {l}");
                format!(
                    "{head}\"duration_ms\": N{}",
                    if l.ends_with(',') { "," } else { "" }
                )
            }
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    (ok, out, err)
}

#[test]
fn restore_json_prints_what_the_official_prints() {
    let Some(bin) = official_bin() else { return };
    let dir = TempDir::new("restore-json");
    let db = dir.join("app.db");
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=wal").unwrap();
    create_schema(&conn);
    let mut rng = Rng::new(11);
    for step in 0..20 {
        workload_step(&mut conn, &mut rng, step);
    }
    let url = format!("file://{}", dir.join("rep").display());
    let (ok, _, err) = run(Command::new(our_bin())
        .args(["replicate", "-once"])
        .arg(&db)
        .arg(&url)
        .env_remove("LITESTREAM_CONFIG"));
    assert!(ok, "replicate -once failed: {err}");
    let want = dump_conn(&conn);
    let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    let both = |args: &[&str]| {
        (
            restore_json(Command::new(our_bin()), &ours, args),
            restore_json(official_cmd(&bin), &theirs, args),
        )
    };

    // A restore: the same summary, and the database restored.
    let ((ok1, o1, e1), (ok2, o2, e2)) = both(&["-json", "-o", "out.db", &url]);
    assert!(ok1 && ok2, "ours: {e1}\nofficial: {e2}");
    assert!(o1.contains("\"db_path\": \"out.db\""), "{o1}");
    assert!(o1.contains("\"txid\": \"00000000000000"), "{o1}");
    assert_eq!(o1, o2, "restore -json: ours, then the official's");
    assert_eq!(dump(&ours.join("out.db")), want);

    // With a TXID and an integrity check.
    let args = [
        "-json",
        "-txid",
        "0000000000000001",
        "-integrity-check",
        "quick",
        "-o",
        "mid.db",
        &url,
    ];
    let ((ok1, o1, e1), (ok2, o2, e2)) = both(&args);
    assert!(ok1 && ok2, "ours: {e1}\nofficial: {e2}");
    assert!(o1.contains("\"integrity_check\": \"quick\""), "{o1}");
    assert_eq!(o1, o2, "restore -json -txid: ours, then the official's");

    // A dry run: the plan as JSON, nothing written.
    let ((ok1, o1, e1), (ok2, o2, e2)) = both(&["-json", "-dry-run", "-o", "plan.db", &url]);
    assert!(ok1 && ok2, "ours: {e1}\nofficial: {e2}");
    assert!(
        o1.contains("\"files\": [\n    {\n      \"level\": "),
        "{o1}"
    );
    assert_eq!(o1, o2, "restore -json -dry-run: ours, then the official's");
    assert!(!ours.join("plan.db").exists());

    // Failures print nothing on stdout: an existing output, no backups.
    let ((ok1, o1, _), (ok2, o2, _)) = both(&["-json", "-o", "out.db", &url]);
    assert!(!ok1 && !ok2, "an existing output is refused by both");
    assert_eq!((o1.as_str(), o2.as_str()), ("", ""));
    let none = format!("file://{}", dir.join("nothing").display());
    let ((ok1, o1, _), (ok2, o2, _)) = both(&["-json", "-o", "none.db", &none]);
    assert!(!ok1 && !ok2, "no backups fails for both");
    assert_eq!((o1.as_str(), o2.as_str()), ("", ""));
    let ((ok1, o1, e1), (ok2, o2, e2)) =
        both(&["-json", "-if-replica-exists", "-o", "none.db", &none]);
    assert!(ok1 && ok2, "ours: {e1}\nofficial: {e2}");
    assert_eq!((o1.as_str(), o2.as_str()), ("", ""));
}
