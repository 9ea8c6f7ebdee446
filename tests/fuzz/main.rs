//! Fuzzing of what redisctl reads from files it is handed: the spec (`spec::load` /
//! `spec::from_bytes`, and what `validate` and `plan` then do with it) and a saved plan
//! (`plan::saved::SavedPlan::from_bytes`, what `apply --plan` reads). Any input must give an
//! error, never a panic, a hang, or memory out of proportion to the reader's size limit (at the
//! rate an input of 64 KiB or more allocates, more than 1 GiB for an input at the limit).
//!
//! An in-tree mutational fuzzer (libFuzzer needs a nightly toolchain and a separate build; this
//! runs in the normal `cargo test`, offline, on stable). Seeds: the spec corpus (tests/specs,
//! cluster.toml.example and its resolved form), saved plans the planner makes from the example
//! and variants of it, and every regression input. Mutations: byte-level (bytes.rs),
//! TOML-aware (toml_aware.rs) and JSON-aware (json_aware.rs), stacked; an input that gives a
//! kind of error not seen before joins the pool the next inputs are mutated from.
//!
//! - `cargo test --offline --test fuzz`: a brief campaign per target (`FUZZ_SECONDS`, default
//!   2, a fixed seed, so that CI runs the same inputs every time), plus the regressions and the
//!   size limits.
//! - `scripts/fuzz MINUTES`: a long campaign with a new seed (printed).
//! - `FUZZ_SEED=N` repeats a campaign's inputs; `FUZZ_TARGETS=spec` (or `plan`) runs one target.
//! - A finding is written to target/fuzz-crashes/ (a panicking input as found and minimized)
//!   with its replay command, `FUZZ_REPLAY=FILE cargo test --offline --test fuzz -- regressions
//!   --nocapture`. Once fixed, the input goes in tests/fuzz/regressions/ (named for what it
//!   broke), where `regressions` replays it and every campaign starts from it. The slowest
//!   input of a campaign is kept there too, for a look.
//!
//! Each target runs in a worker process (this test binary, running the ignored test `worker`)
//! so that what `catch_unwind` cannot catch still names its input: a stack overflow or an
//! allocation past `FUZZ_MEMORY_MB` (default 4096) aborts the worker, and the campaign reports
//! the input it was running (kept in an in-flight file); an input running longer than
//! `FUZZ_HANG_SECONDS` (default 60) is saved by the worker's watchdog.

mod bytes;
mod campaign;
mod json_aware;
mod rng;
mod targets;
mod toml_aware;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use campaign::{HANG_EXIT, Settings};
use targets::Target;

/// Counts the bytes allocated: in all (a worker's limit, an input's peak) and per thread (what
/// one call allocated, with a limit of its own).
mod alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Counting;

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

    thread_local! {
        static THREAD_LIVE: Cell<isize> = const { Cell::new(0) };
        static THREAD_PEAK: Cell<isize> = const { Cell::new(0) };
        static THREAD_LIMIT: Cell<isize> = const { Cell::new(isize::MAX) };
    }

    /// Whether `grow` more bytes may be had; counted if so.
    fn take(grow: usize) -> bool {
        let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
        let thread = THREAD_LIVE.with(|t| {
            let v = t.get().wrapping_add(grow as isize);
            t.set(v);
            v
        });
        if live > LIMIT.load(Ordering::Relaxed) || thread > THREAD_LIMIT.with(Cell::get) {
            give(grow);
            return false;
        }
        PEAK.fetch_max(live, Ordering::Relaxed);
        THREAD_PEAK.with(|p| p.set(p.get().max(thread)));
        true
    }

    fn give(shrink: usize) {
        LIVE.fetch_sub(shrink, Ordering::Relaxed);
        THREAD_LIVE.with(|t| t.set(t.get().wrapping_sub(shrink as isize)));
    }

    // SAFETY: every call is passed on to the system allocator unchanged; only counters change.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if !take(layout.size()) {
                return std::ptr::null_mut();
            }
            // SAFETY: the caller's contract is System's.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if !take(layout.size()) {
                return std::ptr::null_mut();
            }
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            give(layout.size());
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if new_size > layout.size() {
                if !take(new_size - layout.size()) {
                    return std::ptr::null_mut();
                }
            } else {
                give(layout.size() - new_size);
            }
            // SAFETY: as above.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if p.is_null() && new_size > layout.size() {
                give(new_size - layout.size());
            }
            p
        }
    }

    pub fn live() -> usize {
        LIVE.load(Ordering::Relaxed)
    }

    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }

    pub fn reset_peak() {
        PEAK.store(live(), Ordering::Relaxed);
    }

    /// All allocations past `bytes` fail (the process aborts, naming the size it asked for).
    pub fn limit(bytes: usize) {
        LIMIT.store(bytes, Ordering::Relaxed);
    }

    /// Run `f` on this thread; the most it had allocated at once (beyond what was live on this
    /// thread before). Past `limit` bytes an allocation fails, which aborts the test binary
    /// rather than the machine: a reader that reads without bound meets it at once.
    pub fn measure<T>(limit: usize, f: impl FnOnce() -> T) -> (T, usize) {
        let base = THREAD_LIVE.with(Cell::get);
        THREAD_PEAK.with(|p| p.set(base));
        THREAD_LIMIT.with(|l| l.set(base.saturating_add(limit as isize)));
        let out = f();
        THREAD_LIMIT.with(|l| l.set(isize::MAX));
        let peak = THREAD_PEAK.with(Cell::get) - base;
        (out, peak.max(0) as usize)
    }
}

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// target/fuzz-crashes: inputs that panicked, hung, aborted or were slow.
fn crash_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("fuzz-crashes")
}

/// The seed of the brief campaign in the normal test run: fixed, so CI runs the same inputs.
const DEFAULT_SEED: u64 = 0x5eed_2026;

fn targets() -> Vec<Target> {
    match std::env::var("FUZZ_TARGETS") {
        Ok(list) => list
            .split(',')
            .map(|n| Target::parse(n.trim()).unwrap_or_else(|| panic!("no fuzz target {n:?}")))
            .collect(),
        Err(_) => targets::ALL.to_vec(),
    }
}

/// The campaign: one worker process per target, side by side; each one's figures, and every
/// panic, hang or abort it met.
#[test]
fn campaign() {
    let seconds: f64 = env_or("FUZZ_SECONDS", 2.0);
    let seed: u64 = env_or("FUZZ_SEED", DEFAULT_SEED);
    let dir = crash_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let workers: Vec<_> = targets()
        .into_iter()
        .map(|target| {
            let in_flight = dir.join(format!(
                "in-flight-{}-{}.{}",
                target.name(),
                std::process::id(),
                target.ext()
            ));
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "worker",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("FUZZ_TARGETS", target.name())
                .env("FUZZ_SECONDS", seconds.to_string())
                .env("FUZZ_SEED", seed.to_string())
                .env("FUZZ_IN_FLIGHT", &in_flight)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a fuzz worker");
            let out = relay(child.stdout.take().unwrap(), target, false);
            let err = relay(child.stderr.take().unwrap(), target, true);
            (target, in_flight, child, out, err)
        })
        .collect();
    let mut failures = Vec::new();
    for (target, in_flight, mut child, out, err) in workers {
        let status = child.wait().unwrap();
        let _ = out.join();
        let stderr = err.join().unwrap_or_default();
        use std::os::unix::process::ExitStatusExt;
        if status.success() {
            continue;
        }
        if status.code() == Some(HANG_EXIT) {
            failures.push(format!("{}: an input hangs (saved above)", target.name()));
        } else if let Some(signal) = status.signal() {
            // An abort: a stack overflow, or an allocation past the limit. The input it ran is
            // in the in-flight file.
            let input = std::fs::read(&in_flight).unwrap_or_default();
            let file = campaign::save(&dir, target, "abort", &input);
            let _ = std::fs::remove_file(&in_flight);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            failures.push(format!(
                "{}: the worker was killed by signal {signal} running an input of {} bytes ({}): {}\n  replay: {}",
                target.name(),
                input.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
                file.display(),
                campaign::replay_command(&file)
            ));
        } else {
            failures.push(format!(
                "{}: the worker failed ({status}): findings (above)",
                target.name()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "fuzzing found inputs that do not give an error:\n{}",
        failures.join("\n")
    );
}

/// Print a worker's lines as they come (kept by the test harness unless --nocapture); stderr's
/// are also returned.
fn relay(
    stream: impl std::io::Read + Send + 'static,
    target: Target,
    is_err: bool,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = String::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if line.is_empty()
                || line.starts_with("running 1 test")
                || line.starts_with("test result")
            {
                continue;
            }
            println!("[{}] {line}", target.name());
            if is_err {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        kept
    })
}

/// A worker: one campaign in this process (run by `campaign`; run by hand with `--ignored`, it
/// runs every target in turn).
#[test]
#[ignore = "run by `campaign` in a process of its own"]
fn worker() {
    let seconds: f64 = env_or("FUZZ_SECONDS", 2.0);
    let seed: u64 = env_or("FUZZ_SEED", DEFAULT_SEED);
    alloc::limit(env_or::<usize>("FUZZ_MEMORY_MB", 4096) << 20);
    let mut panics = Vec::new();
    for target in targets() {
        let settings = Settings {
            target,
            seconds,
            seed,
            crash_dir: crash_dir(),
            in_flight: std::env::var_os("FUZZ_IN_FLIGHT").map_or_else(
                || crash_dir().join(format!("in-flight-{}.{}", target.name(), target.ext())),
                PathBuf::from,
            ),
            hang: Duration::from_secs(env_or("FUZZ_HANG_SECONDS", 60)),
            progress_every: Duration::from_secs(30),
        };
        println!(
            "fuzz {}: {seconds} s, seed {seed:#x} (FUZZ_SEED={seed} repeats these inputs)",
            target.name()
        );
        let figures = campaign::run(&settings);
        println!("{}", campaign::summary(&settings, &figures));
        if let Some(file) = &figures.slowest_file {
            println!("  slowest input: {}", file.display());
        }
        let mut kinds: Vec<_> = figures.kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1));
        for (kind, count) in kinds.iter().take(12) {
            println!("    {count:>8}  {kind}");
        }
        for f in figures.findings.values() {
            panics.push(format!(
                "{}: {} at {} ({} inputs): {}\n  input: {}\n  replay: {}",
                target.name(),
                if f.location == "memory" {
                    "memory out of proportion"
                } else {
                    "panic"
                },
                f.location,
                f.count,
                f.message.chars().take(300).collect::<String>(),
                f.minimized.display(),
                campaign::replay_command(&f.minimized)
            ));
        }
    }
    assert!(panics.is_empty(), "{}", panics.join("\n"));
}

/// Every regression input (and `FUZZ_REPLAY`, a file a campaign wrote) through its target,
/// outside `catch_unwind`: a panic fails here with its own message and backtrace; memory out of
/// proportion (the campaign's rule, `campaign::MEMORY_BOUND`) fails with the figures.
#[test]
fn regressions() {
    let mut files: Vec<PathBuf> = targets::ALL
        .into_iter()
        .flat_map(targets::regressions)
        .collect();
    if let Some(f) = std::env::var_os("FUZZ_REPLAY") {
        files.push(PathBuf::from(f));
    }
    let mut failures = Vec::new();
    for file in files {
        let target = Target::of_file(&file)
            .unwrap_or_else(|| panic!("{}: .toml (a spec) or .json (a plan)?", file.display()));
        let input = std::fs::read(&file).unwrap();
        println!("replaying {} ({} bytes)", file.display(), input.len());
        let (kinds, peak) = alloc::measure(2 << 30, || target.run(&input));
        println!("  gives: {} ({peak} bytes at most)", kinds.join("; "));
        let projected = peak as f64 / input.len().max(1) as f64 * target.limit() as f64;
        if input.len() >= 64 << 10 && projected > campaign::MEMORY_BOUND as f64 {
            failures.push(format!(
                "{}: {peak} bytes for {} bytes of input, {projected:.0} at the reader's limit",
                file.display(),
                input.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Found by fuzzing: arrays nested in a plan file's `kind` (or in a top-level array, whose first
/// element was read as `kind`) were read whole into a `serde_json::Value`, 64 times the bytes
/// they were written in: 4 GiB for a plan file at the limit. Read before the rest of the plan,
/// `kind` and `format_version` hold nothing of the file now, and every other key is skipped.
#[test]
fn what_a_plan_file_says_it_is_is_read_in_little_memory() {
    let unit = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let body = vec![unit; (8 << 20) / 201].join(",");
    for (name, doc) in [
        ("kind", format!("{{\"kind\": [{body}]}}")),
        ("a top-level array", format!("[[{body}]]")),
        ("another key", format!("{{\"other\": [{body}]}}")),
    ] {
        let (result, peak) = alloc::measure(2 << 30, || {
            redisctl::plan::saved::SavedPlan::from_bytes(doc.as_bytes())
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let e = result.expect_err("not a plan");
        println!("nested arrays in {name}: {e} ({peak} bytes at most)");
        assert!(e.len() < 200, "{e}");
        assert!(
            peak < doc.len(),
            "nested arrays in {name}: {peak} bytes for {} bytes of input",
            doc.len()
        );
    }
}

/// A sparse file of `size` bytes (it takes no disk) in this test binary's scratch directory.
fn sparse_file(name: &str, size: u64) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::File::create(&file).unwrap().set_len(size).unwrap();
    file
}

/// What a reader may have allocated at once while reading a file past its limit of `limit`
/// bytes: the limit twice over (the buffer grows by doubling), and a little more.
fn bounded(limit: usize) -> usize {
    2 * limit + (1 << 20)
}

/// A spec file of 256 MiB, or one that never ends, is refused having read no more than the
/// limit: the reader holds at most about twice the limit, whatever the file.
#[test]
fn a_huge_spec_file_is_refused_reading_no_more_than_the_limit() {
    let limit = redisctl::spec::MAX_SPEC_BYTES;
    let huge = sparse_file("huge.toml", 256 << 20);
    for file in [huge.as_path(), Path::new("/dev/zero")] {
        // Past 1 GiB an allocation fails and the test binary aborts: a reader without a bound
        // stops there rather than take the machine's memory.
        let (result, peak) = alloc::measure(1 << 30, || redisctl::spec::load(file));
        let message = match result {
            Err(redisctl::spec::LoadError::Invalid { diagnostics, .. }) => diagnostics
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => e.to_string(),
            Ok(_) => panic!("{} was read as a valid spec", file.display()),
        };
        println!(
            "{}: {message} (at most {peak} bytes allocated at once)",
            file.display()
        );
        assert!(
            message.contains("larger than 1024 KiB"),
            "{}: {message}",
            file.display()
        );
        assert!(
            peak <= bounded(limit),
            "{}: {peak} bytes allocated at once reading it, more than {}",
            file.display(),
            bounded(limit)
        );
    }
    std::fs::remove_dir_all(huge.parent().unwrap()).unwrap();
}

/// The same for a saved plan, as `apply --plan FILE` reads it.
#[test]
fn a_huge_plan_file_is_refused_reading_no_more_than_the_limit() {
    let limit = redisctl::plan::saved::MAX_BYTES;
    let huge = sparse_file("huge.json", 256 << 20);
    for file in [huge.as_path(), Path::new("/dev/zero")] {
        let (result, peak) = alloc::measure(1 << 30, || {
            redisctl::workflow::apply::read_saved(file)
                .map(|_| ())
                .map_err(|e| {
                    let mut m = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        m.push_str(": ");
                        m.push_str(&s.to_string());
                        source = s.source();
                    }
                    m
                })
        });
        let message = match result {
            Err(m) => m,
            Ok(()) => panic!("{} was read as a plan", file.display()),
        };
        println!(
            "{}: {message} (at most {peak} bytes allocated at once)",
            file.display()
        );
        assert!(
            message.contains("larger than 64 MiB"),
            "{}: {message}",
            file.display()
        );
        assert!(
            peak <= bounded(limit),
            "{}: {peak} bytes allocated at once reading it, more than {}",
            file.display(),
            bounded(limit)
        );
    }
    std::fs::remove_dir_all(huge.parent().unwrap()).unwrap();
}
