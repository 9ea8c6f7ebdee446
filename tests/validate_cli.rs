//! `redisctl validate` against a corpus of specs: every bad spec exits 1 and names the key path
//! and line; every risky-but-legal spec exits 0 with its warning; the reference example is valid.
//!
//! Each corpus file starts with three header comments:
//! `# expect-path: …`, `# expect-line: …`, `# expect-message: …`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn redisctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_redisctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run redisctl")
}

struct Expect {
    path: String,
    line: usize,
    message: String,
}

fn expectations(file: &Path) -> Expect {
    let text = std::fs::read_to_string(file).unwrap();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# expect-{key}: ")))
            .unwrap_or_else(|| panic!("{} lacks # expect-{key}", file.display()))
            .to_string()
    };
    Expect {
        path: get("path"),
        line: get("line").parse().unwrap(),
        message: get("message"),
    }
}

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/specs")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The diagnostic block for `path` in stderr must carry the message and `file:line:`.
fn check_diagnostic(file: &Path, stderr: &str, kind: &str, e: &Expect) -> Result<(), String> {
    let head = format!("{kind}: {}: ", e.path);
    let Some(start) = stderr.find(&head) else {
        return Err(format!("no `{head}` in:\n{stderr}"));
    };
    let block = &stderr[start..];
    let block = &block[..block[1..].find("\n\n").map_or(block.len(), |i| i + 1)];
    let first_line = block.lines().next().unwrap_or_default();
    if e.message.is_empty() || !first_line.contains(&e.message) {
        return Err(format!("message `{}` missing in:\n{block}", e.message));
    }
    let at = format!("{}:{}:", file.display(), e.line);
    if !block.contains(&at) {
        return Err(format!("location `{at}` missing in:\n{block}"));
    }
    Ok(())
}

#[test]
fn every_bad_spec_fails_with_key_path_and_line() {
    let files = corpus("invalid");
    assert!(
        files.len() >= 30,
        "the corpus has {} bad specs",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let e = expectations(file);
        let out = redisctl(&["validate", "--config", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) {
            failures.push(format!(
                "{}: exit {:?}, want 1",
                file.display(),
                out.status.code()
            ));
            continue;
        }
        if !out.stdout.is_empty() {
            failures.push(format!("{}: printed to stdout", file.display()));
        }
        if let Err(why) = check_diagnostic(file, &stderr, "error", &e) {
            failures.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_risky_spec_passes_with_its_warning() {
    let files = corpus("warnings");
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for file in &files {
        let e = expectations(file);
        let out = redisctl(&["validate", "--config", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{}: exit {:?}, want 0\n{stderr}",
                file.display(),
                out.status.code()
            ));
            continue;
        }
        if let Err(why) = check_diagnostic(file, &stderr, "warning", &e) {
            failures.push(format!("{}: {why}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_base_of_the_corpus_is_valid_without_warnings() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/base.toml");
    let out = redisctl(&["validate", "--config", base.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_example_is_valid_and_resolves_to_a_valid_spec() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster.toml.example");
    let out = redisctl(&["validate", "--config", example.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("is valid"), "{stdout}");

    let out = redisctl(&[
        "validate",
        "--resolved",
        "--config",
        example.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let resolved = String::from_utf8(out.stdout).unwrap();
    for key in [
        "strategy = \"at-launch\"",
        "kms_key = \"alias/aws/ebs\"",
        "cluster_require_full_coverage = true",
        "ready_timeout_secs = 300",
    ] {
        assert!(
            resolved.contains(key),
            "resolved spec lacks {key}:\n{resolved}"
        );
    }
    // The resolved spec is itself a valid spec.
    let dir = std::env::temp_dir().join(format!("redisctl-resolved-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("resolved.toml");
    std::fs::write(&f, &resolved).unwrap();
    let out = redisctl(&["validate", "--config", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_spec_file_is_an_error_naming_the_file() {
    let out = redisctl(&["validate", "--config", "/nonexistent/cluster.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read the spec file /nonexistent/cluster.toml"),
        "{stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
}

/// Offline, `verify` still checks the spec first and reads its secrets before touching
/// anything: without the passwords it exits 1 and names the variables to set.
#[test]
fn verify_without_passwords_names_them_and_exits_1() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster.toml.example");
    let out = Command::new(env!("CARGO_BIN_EXE_redisctl"))
        .args(["verify", "--config", example.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env_remove("REDIS_ADMIN_PASSWORD")
        .env_remove("REDIS_APP_PASSWORD")
        .env_remove("REDIS_DEV_PASSWORD")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run redisctl");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not built"), "{stderr}");
    assert!(
        stderr.contains("error:") && stderr.contains("REDIS_ADMIN_PASSWORD"),
        "{stderr}"
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let out = redisctl(&["--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("Exit status:"), "{help}");
    assert!(
        help.contains("2  `plan --detailed-exitcode` only"),
        "{help}"
    );
    let out = redisctl(&["plan", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--out",
        "--json",
        "--detailed-exitcode",
        "--config",
        "--no-color",
        "--verbose",
    ] {
        assert!(help.contains(flag), "plan --help lacks {flag}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for sh in ["bash", "zsh", "fish"] {
        let out = redisctl(&["completions", sh]);
        assert_eq!(out.status.code(), Some(0), "{sh}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("redisctl") && script.contains("detailed-exitcode"),
            "{sh}: {script}"
        );
    }
    let out = redisctl(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// `redisctl show FILE`: a saved plan printed as `plan` prints it (text and `--json`), with no
/// spec (the working directory has none), no AWS and no node; a file that is not a plan is an
/// error that names it.
#[test]
fn show_prints_a_saved_plan_with_no_spec_and_no_aws() {
    use redisctl::plan::saved::SavedPlan;
    use redisctl::plan::{Action, Fingerprint, LocalOp, Op, Phase, Plan, Step};
    let dir = std::env::temp_dir().join(format!("redisctl-show-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plan = Plan {
        cluster: "prod-redis".into(),
        region: "us-east-1".into(),
        steps: vec![
            Step::new(
                "pki.ca",
                Action::Create,
                Phase::Tls,
                "the cluster has no CA yet",
            )
            .op(Op::Local(LocalOp::EnsureCa)),
        ],
        notes: vec![],
        unobserved: vec![],
        requests: Default::default(),
    };
    let saved = SavedPlan::new(
        plan,
        Fingerprint {
            spec: "s".into(),
            observed: "o".into(),
        },
    );
    let file = dir.join("p.plan");
    std::fs::write(&file, saved.to_json()).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_redisctl"))
            .args(args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run(&["show", "p.plan"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Plan file p.plan (saved by redisctl "),
        "{text}"
    );
    assert!(text.contains("on cluster prod-redis (us-east-1)"), "{text}");
    assert!(text.contains("+ pki.ca"), "{text}");
    assert!(
        text.contains("Plan: 1 to add, 0 to change, 0 to destroy"),
        "{text}"
    );
    let out = run(&["show", "--json", "p.plan"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["steps"][0]["address"], "pki.ca", "{json}");
    std::fs::write(dir.join("bad.plan"), "{\"kind\": \"something else\"}").unwrap();
    let out = run(&["show", "bad.plan"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.plan"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The S3 state commands on a spec whose state is local: each refuses with what to do, talks to
/// nothing (no AWS endpoint is set here) and leaves no state directory behind.
#[test]
fn the_state_commands_with_a_local_state_say_what_to_do() {
    let dir = std::env::temp_dir().join(format!("redisctl-local-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml.example"),
        dir.join("cluster.toml"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_redisctl"))
            .args(args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["force-unlock", "0123456789abcdef"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the state is local (no [state] backend = \"s3\" in the spec)")
            && err.contains("what to do: nothing to unlock; if a run seems stuck, end it (its pid is in apply.lock)"),
        "{err}"
    );
    for args in [
        &["state", "push"][..],
        &["state", "pull", "--to", "pulled"][..],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains("moves the state to or from an S3 backend, and the spec has none")
                && err.contains("what to do: add a [state] table with backend = \"s3\""),
            "{args:?}: {err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, ["cluster.toml"], "nothing made beside the spec");
    std::fs::remove_dir_all(&dir).unwrap();
}
