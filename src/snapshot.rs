//! Snapshot comparison for the tests (unit tests and tests/plan_scenarios share it): rendered
//! text compared with a reviewed file under the crate root. Public only so that integration
//! tests can reach it; not part of the CLI's interface.

use std::path::Path;

/// Compare `actual` with `dir`/`file` (relative to the crate root). With `UPDATE_SNAPSHOTS`
/// set the file is (re)written instead; review the diff before committing it.
pub fn assert_snapshot(dir: &str, file: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(file);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read snapshot {} ({e}); run with UPDATE_SNAPSHOTS=1 to create it, then review it",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the rendered text (run with UPDATE_SNAPSHOTS=1 and review the diff)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}
