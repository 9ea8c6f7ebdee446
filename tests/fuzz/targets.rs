//! The two readers under test, each with its seeds and what an input gives: an error of some
//! kind, or a value that then goes where redisctl sends it.
//!
//! - `spec`: the bytes of a spec file, through `spec::from_bytes` (what `spec::load` does with
//!   what it read), the diagnostics rendered as `validate` prints them; a valid spec goes on to
//!   what `validate`, `validate --resolved` and `plan` do with it: the resolved spec must read
//!   back as the same spec, the planner plans it on an empty region, the plan renders and saves.
//! - `plan`: the bytes of a saved plan file, through `SavedPlan::from_bytes`; a plan that reads
//!   must write back as itself.

use std::path::Path;

use redisctl::observed::{self, Image, Observed};
use redisctl::plan::{self, fingerprint, saved::SavedPlan};
use redisctl::render::{self, Shell};
use redisctl::spec::{self, LoadError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Spec,
    Plan,
}

pub const ALL: [Target; 2] = [Target::Spec, Target::Plan];

/// The file name a spec input is read as: absolute, so that the resolved spec's paths read back
/// the same.
const SPEC_PATH: &str = "/fuzz/cluster.toml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Spec => "spec",
            Target::Plan => "plan",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn ext(self) -> &'static str {
        match self {
            Target::Spec => "toml",
            Target::Plan => "json",
        }
    }

    /// The target an input file is for, by its extension.
    pub fn of_file(path: &Path) -> Option<Target> {
        let ext = path.extension()?.to_str()?;
        ALL.into_iter().find(|t| t.ext() == ext)
    }

    /// The largest input the reader accepts.
    pub fn limit(self) -> usize {
        match self {
            Target::Spec => spec::MAX_SPEC_BYTES,
            Target::Plan => plan::saved::MAX_BYTES,
        }
    }

    /// How long a generated input may grow: past the reader's limit, so that the limit itself is
    /// tried too.
    pub fn max_len(self) -> usize {
        match self {
            Target::Spec | Target::Plan => self.limit() + 4096,
        }
    }

    /// The inputs mutations start from.
    pub fn seeds(self) -> Vec<Vec<u8>> {
        let mut seeds = match self {
            Target::Spec => spec_seeds(),
            Target::Plan => plan_seeds(),
        };
        seeds.extend(
            regressions(self)
                .into_iter()
                .map(|f| std::fs::read(f).unwrap()),
        );
        seeds
    }

    /// Run one input: the kinds of error (or of success) it gave. A panic is the finding.
    pub fn run(self, input: &[u8]) -> Vec<String> {
        match self {
            Target::Spec => run_spec(input),
            Target::Plan => run_plan(input),
        }
    }
}

/// The regression inputs of a target: every input a campaign found that once panicked.
pub fn regressions(target: Target) -> Vec<std::path::PathBuf> {
    let dir = root().join("tests/fuzz/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|f: &std::path::PathBuf| Target::of_file(f) == Some(target));
    files.sort();
    files
}

fn spec_seeds() -> Vec<Vec<u8>> {
    let mut files = vec![
        root().join("cluster.toml.example"),
        root().join("tests/specs/base.toml"),
    ];
    for dir in ["tests/specs/invalid", "tests/specs/warnings"] {
        let mut more: Vec<_> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    // The example with every default written out (`validate --resolved`): every key there is.
    let example = spec::from_bytes(Path::new(SPEC_PATH), &seeds[0]).expect("the example is valid");
    seeds.push(example.spec.to_toml().into_bytes());
    seeds
}

/// Saved plans the planner makes from the example and variants of it, on an empty region.
fn plan_seeds() -> Vec<Vec<u8>> {
    let example = std::fs::read_to_string(root().join("cluster.toml.example")).unwrap();
    let variants = [
        example.clone(),
        example
            .replace("# egress = \"public-ip\"", "egress = \"nat-gateway\"")
            .replace("via = \"public-ip\"", "via = \"private-ip\""),
        example.replace("replicas_per_master = 0", "replicas_per_master = 2"),
        example.replace("strategy = \"at-launch\"", "strategy = \"swap\""),
    ];
    variants
        .iter()
        .filter_map(|text| {
            let loaded = spec::from_bytes(Path::new(SPEC_PATH), text.as_bytes()).ok()?;
            let observed = empty_region();
            let p = plan::plan(&loaded.spec, &observed);
            Some(
                SavedPlan::new(p, fingerprint::of(&loaded.spec, &observed))
                    .to_json()
                    .into_bytes(),
            )
        })
        .collect()
}

/// A region before anything was made: Canonical's images only.
fn empty_region() -> Observed {
    let image = |id: &str, date: &str| Image {
        id: id.into(),
        name: format!("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-{date}"),
        creation_date: "2025-01-15T00:00:00.000Z".into(),
        root_device_name: "/dev/sda1".into(),
        architecture: "x86_64".into(),
    };
    Observed {
        images: vec![image("ami-0aaaaaaaaaaaaaaa1", "20250115")],
        local_public_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFuzz fuzz".into()),
        local: observed::Local {
            now: 1_795_000_000,
            ..Default::default()
        },
        ..Observed::default()
    }
}

fn run_spec(input: &[u8]) -> Vec<String> {
    let path = Path::new(SPEC_PATH);
    let shell = Shell::plain();
    match spec::from_bytes(path, input) {
        Ok(loaded) => {
            let _ = render::diagnostics::render_all(&shell, path, &loaded.source, &loaded.warnings);
            let _ = render::diagnostics::valid(&shell, path, &loaded);
            let resolved = loaded.spec.to_toml();
            match spec::from_bytes(path, resolved.as_bytes()) {
                Ok(again) => assert!(
                    again.spec == loaded.spec,
                    "`validate --resolved` reads back as another spec:\n{resolved}"
                ),
                Err(e) => panic!("`validate --resolved` is not a valid spec ({e:?}):\n{resolved}"),
            }
            let observed = empty_region();
            let p = plan::plan(&loaded.spec, &observed);
            let _ = render::plan::human(&p, false);
            let _ = render::plan::json(&p);
            let saved = SavedPlan::new(p, fingerprint::of(&loaded.spec, &observed));
            let back = SavedPlan::from_bytes(saved.to_json().as_bytes());
            assert!(
                back.is_ok_and(|b| b == saved),
                "a saved plan reads back as itself"
            );
            let mut kinds = vec!["valid".to_string()];
            kinds.extend(loaded.warnings.iter().map(diagnostic_kind));
            kinds
        }
        Err(LoadError::Invalid {
            source_map,
            diagnostics,
            ..
        }) => {
            let _ = render::diagnostics::render_all(&shell, path, &source_map, &diagnostics);
            diagnostics.iter().map(diagnostic_kind).collect()
        }
        Err(e) => vec![shape(&chain(&e))],
    }
}

fn run_plan(input: &[u8]) -> Vec<String> {
    match SavedPlan::from_bytes(input) {
        Ok(saved) => {
            let text = saved.to_json();
            let back = SavedPlan::from_bytes(text.as_bytes());
            assert!(
                back.as_ref().is_ok_and(|b| *b == saved),
                "a saved plan that reads does not write back as itself: {back:?}"
            );
            let _ = saved.staleness(&saved.fingerprint);
            vec!["valid".into()]
        }
        Err(e) => vec![shape(&chain(&e))],
    }
}

/// An error with its causes.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let cause = c.to_string();
        if !s.contains(&cause) {
            s.push_str(": ");
            s.push_str(&cause);
        }
        source = c.source();
    }
    s
}

fn diagnostic_kind(d: &spec::Diagnostic) -> String {
    let path = d.path.as_deref().unwrap_or("-");
    let path: String = {
        // users[12].keys[3] -> users[].keys[]
        let mut out = String::new();
        let mut in_index = false;
        for c in path.chars() {
            match c {
                '[' => {
                    in_index = true;
                    out.push('[');
                }
                ']' => {
                    in_index = false;
                    out.push(']');
                }
                _ if in_index => {}
                c => out.push(c),
            }
        }
        out
    };
    let path = if path.starts_with("cluster.tags.") {
        "cluster.tags.…".to_string()
    } else {
        path
    };
    format!("{:?} {path}: {}", d.severity, shape(&d.message))
}

/// The shape of an error message: what the input put in it (quoted values, numbers, positions)
/// left out, so that one kind of error counts once. A quoted snake_case word is kept: it names
/// a field or a variant (`missing field `steps``), but for the unknown one of an "unknown
/// field" or "unknown variant" (the list of the expected ones tells where it was).
pub fn shape(message: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut quoted = String::new();
    let mut last_digit = false;
    let mut skip_first = message.contains("unknown field") || message.contains("unknown variant");
    for c in message.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
                let word = !std::mem::take(&mut skip_first)
                    && quoted.len() <= 40
                    && quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                out.push_str(if word { &quoted } else { "…" });
                out.push(c);
                quoted.clear();
            } else {
                quoted.push(c);
            }
            continue;
        }
        match c {
            '`' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            c if c.is_ascii_digit() => {
                if !last_digit {
                    out.push('#');
                }
                last_digit = true;
                continue;
            }
            c => out.push(c),
        }
        last_digit = false;
    }
    out.chars().take(160).collect()
}
