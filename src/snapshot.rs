//! Snapshot comparison for the tests (unit tests and tests/plan_scenarios share it): rendered
//! text compared with a reviewed file under the crate root. Public only so that integration
//! tests can reach it; not part of the CLI's interface.

use std::ffi::OsStr;
use std::path::Path;

/// The one variable that rewrites snapshots, and the one value that does it.
pub const UPDATE_VAR: &str = "UPDATE_SNAPSHOTS";

/// What `UPDATE_SNAPSHOTS` asks for: unset compares, exactly `1` rewrites, and any other value
/// (`0`, `true`, empty …) is an error, so that a value meant to turn rewriting off never
/// silently rewrites every snapshot and passes.
pub fn update_requested(value: Option<&OsStr>) -> Result<bool, String> {
    match value {
        None => Ok(false),
        Some(v) if v == "1" => Ok(true),
        Some(v) => Err(format!(
            "{UPDATE_VAR}={v:?}: only {UPDATE_VAR}=1 rewrites snapshots; unset it to compare them"
        )),
    }
}

/// Compare `actual` with `dir`/`file` (relative to the crate root). With `UPDATE_SNAPSHOTS=1`
/// the file is (re)written instead; review the diff before committing it. Any other value of
/// `UPDATE_SNAPSHOTS` fails the test.
pub fn assert_snapshot(dir: &str, file: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(file);
    let update =
        update_requested(std::env::var_os(UPDATE_VAR).as_deref()).unwrap_or_else(|e| panic!("{e}"));
    if update {
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

#[cfg(test)]
mod tests {
    use super::update_requested;
    use std::ffi::OsStr;

    #[test]
    fn only_update_snapshots_1_rewrites() {
        assert_eq!(update_requested(None), Ok(false));
        assert_eq!(update_requested(Some(OsStr::new("1"))), Ok(true));
        for other in ["0", "", "true", "yes", "01", " 1", "1 "] {
            let err = update_requested(Some(OsStr::new(other))).unwrap_err();
            assert!(
                err.contains("only UPDATE_SNAPSHOTS=1 rewrites"),
                "{other:?}: {err}"
            );
            assert!(err.contains(&format!("{other:?}")), "{other:?}: {err}");
        }
    }
}
