//! docs/ci.md against the real CLI: its GitHub Actions workflow is valid YAML, and every
//! `redisctl …` command line in the workflow's `run:` steps (and in the page's `sh` blocks)
//! names an existing subcommand with flags that exist, as `redisctl <sub> --help` lists them.
//!
//! Flags are read from the `Options:` section of the help text only, so a flag that a help
//! text merely mentions in prose (`apply --help` says "a plan saved by `plan --out`") does not
//! count as a flag of that subcommand.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

fn doc() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The fenced blocks of `markdown` whose info string is one of `langs`: (line of the fence,
/// text).
fn fenced(markdown: &str, langs: &[&str]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, bool, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let t = line.trim_start();
        match &mut current {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    let lang = info.split_whitespace().next().unwrap_or("");
                    current = Some((i + 1, langs.contains(&lang), String::new()));
                }
            }
            Some((start, keep, text)) => {
                if t.starts_with("```") {
                    if *keep {
                        out.push((*start, std::mem::take(text)));
                    }
                    current = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    assert!(current.is_none(), "an unclosed ``` fence in docs/ci.md");
    out
}

/// The options a help text lists (`-c`, `--config`, `--verbose`, …), from its `Options:`
/// section only.
fn options_of(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut inside = false;
    for line in help.lines() {
        if line.trim_end() == "Options:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        // (clap's long help puts a blank line between options; the section ends at the first
        // line that is not indented, e.g. "Exit status: …".)
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        let t = line.trim_start();
        if !t.starts_with('-') || t.starts_with("- ") {
            continue; // a wrapped description line, or a possible value's
        }
        for word in t.split(|c: char| c.is_whitespace() || c == ',') {
            if word.is_empty() {
                continue;
            }
            if !word.starts_with('-') {
                break;
            }
            let word = word.trim_end_matches("...");
            let word = word.split('=').next().unwrap_or(word);
            out.insert(word.to_string());
        }
    }
    out
}

/// Subcommand (`None`: the top level) -> its options, or why `--help` failed.
type HelpCache = HashMap<Option<String>, Result<BTreeSet<String>, String>>;

/// `redisctl [sub] --help`: its options, or why the subcommand does not exist.
fn help_options(sub: Option<&str>) -> Result<BTreeSet<String>, String> {
    static CACHE: Mutex<Option<HelpCache>> = Mutex::new(None);
    let key = sub.map(String::from);
    if let Some(hit) = CACHE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return hit.clone();
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redisctl"));
    if let Some(s) = sub {
        cmd.arg(s);
    }
    let out = cmd
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .expect("run redisctl --help");
    let result = if out.status.success() {
        let opts = options_of(&String::from_utf8_lossy(&out.stdout));
        if opts.is_empty() {
            Err(format!(
                "`redisctl {} --help` lists no options",
                sub.unwrap_or("")
            ))
        } else {
            Ok(opts)
        }
    } else {
        Err(format!(
            "`redisctl {} --help` failed: {}",
            sub.unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    };
    CACHE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(key, result.clone());
    result
}

/// Shell words that end one command.
fn is_operator(word: &str) -> bool {
    matches!(word, "|" | "||" | "&&" | ";" | "&" | ")" | "`")
        || word.starts_with('>')
        || word.starts_with('<')
        || word.starts_with("2>")
        || word.starts_with("1>")
        || word.starts_with("&>")
}

/// Words after which a new command starts.
fn starts_command(prev: Option<&str>) -> bool {
    match prev {
        None => true,
        Some(w) => {
            is_operator(w)
                || matches!(w, "then" | "else" | "do" | "if" | "!" | "time" | "exec" | "{" | "--")
                // `redisctl-sandbox exec -- redisctl …`
                // `VAR=value redisctl …`
                || (w.contains('=') && !w.starts_with('-') && !w.starts_with('$'))
        }
    }
}

/// The `redisctl …` command lines in a shell script: continuation lines joined, comments
/// dropped, each command cut at the first shell operator. Only `redisctl` in command position
/// counts (not inside an `echo "… redisctl …"` string or a path such as `.redisctl/`).
fn redisctl_commands(script: &str) -> Vec<Vec<String>> {
    let mut joined = String::new();
    for line in script.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(cont) => {
                joined.push_str(cont);
                joined.push(' ');
            }
            None => {
                joined.push_str(t);
                joined.push('\n');
            }
        }
    }
    let mut out = Vec::new();
    for line in joined.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            let bare = w
                .strip_prefix("$(")
                .or_else(|| w.strip_prefix('`'))
                .or_else(|| w.split_once("=$(").map(|(_, r)| r));
            let at_start = starts_command(if i == 0 { None } else { Some(words[i - 1]) });
            if (w == "redisctl" && at_start) || bare == Some("redisctl") {
                let mut cmd = vec!["redisctl".to_string()];
                let mut j = i + 1;
                while j < words.len() && !is_operator(words[j]) {
                    let word = words[j];
                    // `… plan.bin)` or `…;` end the command inside the word.
                    let end = word.ends_with(')') || word.ends_with(';') || word.ends_with('`');
                    let word = word.trim_end_matches([')', ';', '`']);
                    if !word.is_empty() {
                        cmd.push(word.trim_matches(['"', '\'']).to_string());
                    }
                    j += 1;
                    if end {
                        break;
                    }
                }
                out.push(cmd);
                i = j;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// Check one `redisctl …` command against the real binary's help texts.
fn check_command(words: &[String]) -> Result<(), String> {
    let line = words.join(" ");
    assert_eq!(words.first().map(String::as_str), Some("redisctl"));
    let global = help_options(None)?;
    let mut i = 1;
    // Global options before the subcommand (`--config FILE` / `-c FILE` take a value).
    while i < words.len() && words[i].starts_with('-') {
        let flag = words[i].split('=').next().unwrap_or("");
        if !global.contains(flag) {
            return Err(format!("`{line}`: `redisctl --help` has no option {flag}"));
        }
        if (flag == "--config" || flag == "-c") && !words[i].contains('=') {
            i += 1;
        }
        i += 1;
    }
    let Some(sub) = words.get(i) else {
        return Err(format!("`{line}`: no subcommand"));
    };
    let opts = help_options(Some(sub)).map_err(|e| format!("`{line}`: {e}"))?;
    for w in &words[i + 1..] {
        if !w.starts_with('-') || w == "-" || w == "--" {
            continue; // a value or a positional argument (apply's FILE)
        }
        let flag = w.split('=').next().unwrap_or(w);
        // Bundled short flags (`-vv`) are the same flag repeated.
        let flag = if !flag.starts_with("--") && flag.len() > 2 {
            &flag[..2]
        } else {
            flag
        };
        if !opts.contains(flag) {
            return Err(format!(
                "`{line}`: `redisctl {sub} --help` has no option {flag} (it has: {})",
                opts.iter().cloned().collect::<Vec<_>>().join(" ")
            ));
        }
    }
    Ok(())
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

/// The `run:` scripts of every step of every job.
fn run_scripts(workflow: &serde_yaml::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(jobs) = workflow.get("jobs").and_then(|j| j.as_mapping()) else {
        return out;
    };
    for (name, job) in jobs {
        let name = name.as_str().unwrap_or("?");
        let steps = job.get("steps").and_then(|s| s.as_sequence());
        for (k, step) in steps.into_iter().flatten().enumerate() {
            if let Some(run) = step.get("run").and_then(|r| r.as_str()) {
                let label = step
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(String::from)
                    .unwrap_or_else(|| format!("step {k}"));
                out.push((format!("jobs.{name} / {label}"), run.to_string()));
            }
        }
    }
    out
}

#[test]
fn the_workflow_is_valid_yaml_and_every_redisctl_command_exists() {
    let md = doc();
    let blocks = fenced(&md, &["yaml", "yml"]);
    assert!(!blocks.is_empty(), "docs/ci.md has no ```yaml block");
    let mut seen: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let mut workflows = 0;
    for (line, text) in &blocks {
        let doc: serde_yaml::Value = serde_yaml::from_str(text)
            .unwrap_or_else(|e| panic!("docs/ci.md: the yaml block at line {line}: {e}"));
        if doc.get("jobs").is_none() {
            continue;
        }
        workflows += 1;
        assert!(
            doc.get("on").is_some() || doc.get(serde_yaml::Value::Bool(true)).is_some(),
            "docs/ci.md line {line}: a workflow without `on:`"
        );
        for (job, jobdef) in doc["jobs"].as_mapping().expect("jobs is a mapping") {
            assert!(
                jobdef.get("runs-on").is_some() && jobdef.get("steps").is_some(),
                "docs/ci.md line {line}: job {job:?} lacks runs-on or steps"
            );
        }
        for (where_, script) in run_scripts(&doc) {
            for cmd in redisctl_commands(&script) {
                if let Err(e) = check_command(&cmd) {
                    problems.push(format!("docs/ci.md (yaml at line {line}) {where_}: {e}"));
                }
                seen.push(cmd.join(" "));
            }
        }
    }
    assert!(
        workflows >= 1,
        "docs/ci.md has no workflow (a yaml block with jobs:)"
    );
    // The page's shell examples too.
    for (line, text) in fenced(&md, &["sh", "bash", "shell", "console"]) {
        for cmd in redisctl_commands(&text) {
            if let Err(e) = check_command(&cmd) {
                problems.push(format!("docs/ci.md (sh block at line {line}): {e}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // What the page promises the workflow does (issue 7).
    let has = |sub: &str, flags: &[&str]| {
        seen.iter().any(|c| {
            let w = words(c);
            w.iter().any(|x| x == sub) && flags.iter().all(|f| w.iter().any(|x| x == f))
        })
    };
    assert!(
        has("validate", &[]),
        "no `redisctl validate` step: {seen:?}"
    );
    assert!(
        has("plan", &["--detailed-exitcode", "--out"]),
        "no `redisctl plan --detailed-exitcode --out` step: {seen:?}"
    );
    assert!(
        seen.iter().any(|c| {
            let w = words(c);
            w.contains(&"apply".to_string()) && w.iter().any(|x| x.ends_with(".bin"))
        }),
        "no `redisctl apply <saved plan>` step: {seen:?}"
    );
    assert!(
        has("verify", &["--json"]),
        "no `redisctl verify --json` step: {seen:?}"
    );
}

#[test]
fn the_checker_catches_bogus_flags_and_subcommands() {
    // Real commands pass.
    for ok in [
        "redisctl validate",
        "redisctl --config cluster.toml plan --detailed-exitcode --no-color --out plan.bin",
        "redisctl -c cluster.toml apply plan.bin",
        "redisctl --no-color apply --yes --parallelism 4",
        "redisctl verify --json -vv",
        "redisctl plan --out=plan.bin",
    ] {
        check_command(&words(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // Bogus ones fail, with the offending flag named.
    for (bad, named) in [
        ("redisctl plan --bogus", "--bogus"),
        ("redisctl plan --detailed", "--detailed"),
        ("redisctl verify --yes", "--yes"),
        // `apply --help` mentions `plan --out` in prose; it is still not an apply option.
        ("redisctl apply --out plan.bin", "--out"),
        ("redisctl --bogus-global plan", "--bogus-global"),
        ("redisctl complete bash", "complete"),
        ("redisctl --config cluster.toml", "no subcommand"),
    ] {
        let e = check_command(&words(bad)).expect_err(bad);
        assert!(e.contains(named), "{bad}: {e}");
    }
}

#[test]
fn commands_are_found_in_scripts_as_the_shell_runs_them() {
    let script = r#"
set +e
# redisctl plan --not-checked (a comment)
redisctl --config cluster.toml plan --detailed-exitcode \
  --no-color --out plan.bin > plan.txt 2> plan.err
code=$?
echo "apply it with redisctl apply plan.bin"
out=$(redisctl verify --json)
NO_COLOR=1 redisctl validate && redisctl apply plan.bin | tee apply.txt
tar -C .redisctl -cz prod-redis
redisctl-sandbox exec -- redisctl plan --json
"#;
    let found: Vec<String> = redisctl_commands(script)
        .into_iter()
        .map(|c| c.join(" "))
        .collect();
    assert_eq!(
        found,
        [
            "redisctl --config cluster.toml plan --detailed-exitcode --no-color --out plan.bin",
            "redisctl verify --json",
            "redisctl validate",
            "redisctl apply plan.bin",
            "redisctl plan --json",
        ]
    );
    // A bogus flag in a workflow-like script is caught end to end.
    let bad = redisctl_commands("redisctl plan --detailed-exitcode --outfile plan.bin\n");
    assert!(check_command(&bad[0]).is_err());
}

#[test]
fn options_come_from_the_options_section_only() {
    let help = "Usage: redisctl plan [OPTIONS]\n\nOptions:\n  -c, --config <FILE>  The spec\n      --out <FILE>  Save the plan\n                    for `apply --yes`\n  -v, --verbose...  Logs\n\nExit status: see --detailed-exitcode.\n";
    let o = options_of(help);
    assert_eq!(
        o.into_iter().collect::<Vec<_>>(),
        ["--config", "--out", "--verbose", "-c", "-v"]
    );
}
