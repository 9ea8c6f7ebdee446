//! One campaign against one target: inputs mutated from the seeds and from a pool of inputs
//! that gave a new kind of error, each run under `catch_unwind`, timed and its memory counted.
//! Findings: a panicking input (written to the crash directory, then minimized); memory out of
//! proportion (an input of 64 KiB or more whose rate, bytes allocated per byte of input, would
//! take the reader past [`MEMORY_BOUND`] at its size limit); a hang (caught by a watchdog). The
//! input being run is always in the in-flight file, so that an abort (a stack overflow, an
//! allocation past the worker's limit) leaves it for the parent process to report.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::rng::Rng;
use crate::targets::Target;
use crate::{alloc, bytes, json_aware, toml_aware};

/// What a reader may take for the largest input it accepts (1 MiB of spec, 64 MiB of plan).
pub const MEMORY_BOUND: usize = 1 << 30;

/// The exit code of a worker whose watchdog found an input that hangs.
pub const HANG_EXIT: i32 = 86;

pub struct Settings {
    pub target: Target,
    pub seconds: f64,
    pub seed: u64,
    pub crash_dir: PathBuf,
    pub in_flight: PathBuf,
    /// An input that runs longer than this is a hang: saved, and the worker exits.
    pub hang: Duration,
    pub progress_every: Duration,
}

pub struct Finding {
    pub location: String,
    pub message: String,
    pub count: u64,
    pub minimized: PathBuf,
}

#[derive(Default)]
pub struct Figures {
    pub inputs: u64,
    pub valid: u64,
    pub elapsed: Duration,
    pub kinds: HashMap<String, u64>,
    pub pool: usize,
    pub largest: usize,
    /// The slowest input: its time and size.
    pub slowest: (Duration, usize),
    /// The most memory one input took at once (bytes above what was live before it), and the
    /// size of that input.
    pub memory: (usize, usize),
    pub findings: BTreeMap<String, Finding>,
    /// The slowest input, kept for a look.
    pub slowest_file: Option<PathBuf>,
}

thread_local! {
    static FUZZING: Cell<bool> = const { Cell::new(false) };
    static PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Panics inside a fuzzed call are recorded, not printed; any other goes to the default hook.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FUZZING.with(Cell::get) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                PANIC.with(|p| *p.borrow_mut() = Some((location, message)));
            } else {
                previous(info);
            }
        }));
    });
}

/// Run one input: its kinds, or the panic's (location, message).
pub fn run_one(target: Target, input: &[u8]) -> Result<Vec<String>, (String, String)> {
    install_hook();
    FUZZING.with(|f| f.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| target.run(input)));
    FUZZING.with(|f| f.set(false));
    result.map_err(|_| {
        PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| ("?".into(), "a panic the hook did not see".into()))
    })
}

/// Where an input is written: `<target>-<what>-<sha256 prefix>.<ext>`.
pub fn save(dir: &Path, target: Target, what: &str, input: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the crash directory");
    let hash = hex::encode(&Sha256::digest(input)[..8]);
    let file = dir.join(format!("{}-{what}-{hash}.{}", target.name(), target.ext()));
    std::fs::write(&file, input).expect("write the input");
    file
}

pub fn replay_command(file: &Path) -> String {
    format!(
        "FUZZ_REPLAY={} cargo test --offline --test fuzz -- regressions --nocapture",
        file.display()
    )
}

/// The input being run, kept in a file while it runs.
struct InFlight(File);

impl InFlight {
    fn record(&self, input: &[u8]) {
        self.0
            .write_all_at(input, 0)
            .expect("write the in-flight input");
        self.0
            .set_len(input.len() as u64)
            .expect("size the in-flight input");
    }
}

/// Milliseconds since the campaign's start when the running input started; 0 when idle.
static STARTED: AtomicU64 = AtomicU64::new(0);

fn watchdog(s: &Settings, epoch: Instant, stop: Arc<AtomicBool>) {
    let (hang, in_flight, dir, target) =
        (s.hang, s.in_flight.clone(), s.crash_dir.clone(), s.target);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let started = STARTED.load(Ordering::Relaxed);
            let now = epoch.elapsed().as_millis() as u64;
            if started != 0 && now.saturating_sub(started) > hang.as_millis() as u64 {
                let input = std::fs::read(&in_flight).unwrap_or_default();
                let file = save(&dir, target, "hang", &input);
                println!(
                    "HANG: an input ran longer than {hang:?} ({} bytes): {}\n  replay: {}",
                    input.len(),
                    file.display(),
                    replay_command(&file)
                );
                std::process::exit(HANG_EXIT);
            }
        }
    });
}

struct Runner<'a> {
    s: &'a Settings,
    in_flight: InFlight,
    epoch: Instant,
}

impl Runner<'_> {
    /// One input, recorded in flight and watched; its kinds or its panic, its time and memory.
    fn run(&self, input: &[u8]) -> (Result<Vec<String>, (String, String)>, Duration, usize) {
        self.in_flight.record(input);
        let before = alloc::live();
        alloc::reset_peak();
        let start = Instant::now();
        STARTED.store(
            (self.epoch.elapsed().as_millis() as u64).max(1),
            Ordering::Relaxed,
        );
        let result = run_one(self.s.target, input);
        STARTED.store(0, Ordering::Relaxed);
        (
            result,
            start.elapsed(),
            alloc::peak().saturating_sub(before),
        )
    }

    /// The shortest input found by deleting chunks that still panics at `location`.
    fn minimize(&self, input: &[u8], location: &str) -> Vec<u8> {
        let mut current = input.to_vec();
        let mut tries = 0;
        let mut chunk = current.len().div_ceil(2);
        while chunk >= 1 && tries < 4000 {
            let mut i = 0;
            let mut shrunk = false;
            while i < current.len() && tries < 4000 {
                let end = (i + chunk).min(current.len());
                let mut candidate = current[..i].to_vec();
                candidate.extend_from_slice(&current[end..]);
                tries += 1;
                match self.run(&candidate).0 {
                    Err((at, _)) if at == location => {
                        current = candidate;
                        shrunk = true;
                    }
                    _ => i += chunk,
                }
            }
            if !shrunk {
                chunk /= 2;
            }
        }
        current
    }
}

pub fn run(s: &Settings) -> Figures {
    let target = s.target;
    let seeds = target.seeds();
    let tdict = toml_aware::Dict::new(&seeds);
    let jdict = json_aware::Dict::new(&seeds);
    let tokens = match target {
        Target::Spec => tdict.tokens(),
        Target::Plan => jdict.tokens(),
    };
    let max_len = target.max_len();
    if let Some(dir) = s.in_flight.parent() {
        std::fs::create_dir_all(dir).expect("create the crash directory");
    }
    let runner = Runner {
        s,
        in_flight: InFlight(File::create(&s.in_flight).expect("create the in-flight file")),
        epoch: Instant::now(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    watchdog(s, runner.epoch, stop.clone());

    let mut rng = Rng::new(s.seed);
    let mut f = Figures::default();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut pool_bytes = 0usize;
    let mut seen: HashSet<String> = HashSet::new();
    let deadline = Duration::from_secs_f64(s.seconds);
    let mut next_progress = s.progress_every;
    let mut queue: Vec<Vec<u8>> = seeds.clone();
    let mut slowest: Option<Vec<u8>> = None;
    queue.reverse();

    while runner.epoch.elapsed() < deadline || !queue.is_empty() {
        // The seeds as they are first, then mutants of the seeds and of the pool.
        let input = match queue.pop() {
            Some(seed) => seed,
            None => {
                let base = if pool.is_empty() || rng.chance(15) {
                    rng.pick(&seeds)
                } else {
                    rng.pick(&pool)
                };
                let mut data = base.clone();
                let others: Vec<&[u8]> = (0..4)
                    .map(|_| {
                        if pool.is_empty() || rng.chance(50) {
                            rng.pick(&seeds).as_slice()
                        } else {
                            rng.pick(&pool).as_slice()
                        }
                    })
                    .collect();
                let stack = if rng.chance(80) {
                    rng.count(3)
                } else {
                    rng.count(8)
                };
                for _ in 0..stack {
                    let aware = rng.chance(55);
                    match target {
                        Target::Spec if aware => match std::str::from_utf8(&data) {
                            Ok(text) => {
                                data = toml_aware::mutate(&mut rng, text, &tdict, max_len)
                                    .into_bytes();
                            }
                            Err(_) => bytes::mutate(&mut rng, &mut data, &others, &tokens, max_len),
                        },
                        Target::Plan if aware => {
                            match json_aware::mutate(&mut rng, &data, &jdict, max_len) {
                                Some(d) => data = d,
                                None => {
                                    bytes::mutate(&mut rng, &mut data, &others, &tokens, max_len)
                                }
                            }
                        }
                        _ => bytes::mutate(&mut rng, &mut data, &others, &tokens, max_len),
                    }
                }
                data
            }
        };
        let (result, took, memory) = runner.run(&input);
        f.inputs += 1;
        f.largest = f.largest.max(input.len());
        if took > f.slowest.0 {
            f.slowest = (took, input.len());
            slowest = Some(input.clone());
        }
        if memory > f.memory.0 {
            f.memory = (memory, input.len());
        }
        // Memory out of proportion: at this input's rate, the largest input the reader
        // accepts would take more than MEMORY_BOUND. (Inputs of 64 KiB and more: below, fixed
        // costs dominate the rate.)
        let projected = memory as f64 / input.len().max(1) as f64 * target.limit() as f64;
        if input.len() >= 64 << 10 && projected > MEMORY_BOUND as f64 {
            let location = "memory".to_string();
            match f.findings.get_mut(&location) {
                Some(known) => known.count += 1,
                None => {
                    let file = save(&s.crash_dir, target, "memory", &input);
                    let message = format!(
                        "{} for an input of {}: {:.0} times its size, {} for an input at the reader's limit of {}",
                        mib(memory),
                        mib(input.len()),
                        memory as f64 / input.len() as f64,
                        mib(projected as usize),
                        mib(target.limit())
                    );
                    println!(
                        "MEMORY: {message}\n  input: {}\n  replay: {}",
                        file.display(),
                        replay_command(&file)
                    );
                    f.findings.insert(
                        location.clone(),
                        Finding {
                            location,
                            message,
                            count: 1,
                            minimized: file,
                        },
                    );
                }
            }
        }
        match result {
            Ok(kinds) => {
                if kinds.first().is_some_and(|k| k == "valid") {
                    f.valid += 1;
                }
                let mut new = false;
                for k in kinds {
                    new |= seen.insert(k.clone());
                    *f.kinds.entry(k).or_default() += 1;
                }
                if new && input.len() <= 64 << 10 {
                    // A new kind of error: mutants of this input may reach further. (Not a
                    // large one: its mutants would all be large, and few inputs would run.)
                    pool_bytes += input.len();
                    if pool.len() < 5000 && pool_bytes < 512 << 20 {
                        pool.push(input);
                    } else {
                        let i = rng.below(pool.len());
                        pool_bytes -= pool[i].len();
                        pool[i] = input;
                    }
                }
            }
            Err((location, message)) => match f.findings.get_mut(&location) {
                Some(known) => known.count += 1,
                None => {
                    let file = save(&s.crash_dir, target, "panic", &input);
                    let small = runner.minimize(&input, &location);
                    let minimized = save(&s.crash_dir, target, "panic-min", &small);
                    println!(
                        "PANIC at {location}: {}\n  input: {} ({} bytes)\n  minimized: {} ({} bytes)\n  replay: {}",
                        message.chars().take(400).collect::<String>(),
                        file.display(),
                        input.len(),
                        minimized.display(),
                        small.len(),
                        replay_command(&minimized)
                    );
                    f.findings.insert(
                        location.clone(),
                        Finding {
                            location,
                            message,
                            count: 1,
                            minimized,
                        },
                    );
                }
            },
        }
        if runner.epoch.elapsed() >= next_progress {
            next_progress += s.progress_every;
            f.elapsed = runner.epoch.elapsed();
            f.pool = pool.len();
            println!("  … {}", summary(s, &f));
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(input) = slowest {
        f.slowest_file = Some(save(&s.crash_dir, target, "slowest", &input));
    }
    f.elapsed = runner.epoch.elapsed();
    f.pool = pool.len();
    drop(runner);
    let _ = std::fs::remove_file(&s.in_flight);
    f
}

fn mib(n: usize) -> String {
    format!("{:.1} MiB", n as f64 / (1 << 20) as f64)
}

/// One line of figures.
pub fn summary(s: &Settings, f: &Figures) -> String {
    let secs = f.elapsed.as_secs_f64();
    format!(
        "fuzz {}: {} inputs in {:.1} s ({:.0}/s), seed {:#x}; {} valid, {} distinct error kinds, pool {}; largest input {}; slowest input {} ms ({}); most memory for one input {} (input of {}); {} finding(s)",
        s.target.name(),
        f.inputs,
        secs,
        f.inputs as f64 / secs.max(1e-9),
        s.seed,
        f.valid,
        f.kinds.len(),
        f.pool,
        mib(f.largest),
        f.slowest.0.as_millis(),
        mib(f.slowest.1),
        mib(f.memory.0),
        mib(f.memory.1),
        f.findings.len()
    )
}
