//! Parsers of what redis-cli prints on a node: `CLUSTER INFO`, `CLUSTER NODES`, `INFO` and
//! `redis-cli --cluster check`. They take the raw text (`\n` or `\r\n`, as redis-cli prints
//! it when its output is not a terminal) and never panic on odd input: an unknown line is
//! skipped, a missing required field is an error naming it.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// redis-cli printed a Redis error instead of the reply (`NOAUTH …`, `ERR …`).
    #[error("redis replied with an error: {0}")]
    RedisError(String),
    #[error("{what}: field `{field}` is missing")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
    #[error("{what}: `{value}` is not a valid {field}")]
    Invalid {
        what: &'static str,
        field: &'static str,
        value: String,
    },
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(|l| l.trim_end_matches('\r'))
}

/// A Redis error reply as redis-cli prints it: `(error) ERR …` on a terminal, the bare error
/// otherwise.
fn redis_error(text: &str) -> Option<String> {
    let first = lines(text).find(|l| !l.trim().is_empty())?.trim();
    let bare = first.strip_prefix("(error) ").unwrap_or(first);
    let code = bare.split_whitespace().next()?;
    let is_error = first.starts_with("(error) ")
        || (code.len() > 2
            && code.chars().all(|c| c.is_ascii_uppercase())
            && matches!(
                code,
                "ERR"
                    | "NOAUTH"
                    | "NOPERM"
                    | "WRONGPASS"
                    | "LOADING"
                    | "MASTERDOWN"
                    | "CLUSTERDOWN"
                    | "BUSY"
                    | "MOVED"
                    | "ASK"
                    | "TRYAGAIN"
                    | "READONLY"
            ));
    is_error.then(|| bare.to_string())
}

// ---- CLUSTER INFO --------------------------------------------------------------------------

/// `CLUSTER INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `ok` or `fail`.
    pub cluster_state: String,
    pub slots_assigned: u32,
    pub slots_ok: u32,
    pub slots_pfail: u32,
    pub slots_fail: u32,
    pub known_nodes: u32,
    /// Masters serving at least one slot.
    pub size: u32,
    pub current_epoch: u64,
    pub my_epoch: u64,
    /// Every field, including those above, as printed.
    pub fields: BTreeMap<String, String>,
}

impl ClusterInfo {
    pub fn state_ok(&self) -> bool {
        self.cluster_state == "ok"
    }

    /// `cluster_state:ok` and all 16384 slots assigned and served.
    pub fn healthy(&self) -> bool {
        self.state_ok() && self.slots_assigned == 16384 && self.slots_ok == 16384
    }
}

/// Parse `CLUSTER INFO`.
pub fn cluster_info(text: &str) -> Result<ClusterInfo, ParseError> {
    if let Some(e) = redis_error(text) {
        return Err(ParseError::RedisError(e));
    }
    let fields: BTreeMap<String, String> = lines(text)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    const WHAT: &str = "CLUSTER INFO";
    let get = |field: &'static str| {
        fields
            .get(field)
            .ok_or(ParseError::Missing { what: WHAT, field })
    };
    let num = |field: &'static str| -> Result<u64, ParseError> {
        let v = get(field)?;
        v.parse().map_err(|_| ParseError::Invalid {
            what: WHAT,
            field,
            value: v.clone(),
        })
    };
    let small = |field: &'static str| -> Result<u32, ParseError> {
        let n = num(field)?;
        u32::try_from(n).map_err(|_| ParseError::Invalid {
            what: WHAT,
            field,
            value: n.to_string(),
        })
    };
    Ok(ClusterInfo {
        cluster_state: get("cluster_state")?.clone(),
        slots_assigned: small("cluster_slots_assigned")?,
        slots_ok: small("cluster_slots_ok")?,
        slots_pfail: small("cluster_slots_pfail")?,
        slots_fail: small("cluster_slots_fail")?,
        known_nodes: small("cluster_known_nodes")?,
        size: small("cluster_size")?,
        current_epoch: num("cluster_current_epoch")?,
        my_epoch: num("cluster_my_epoch").unwrap_or(0),
        fields,
    })
}

// ---- CLUSTER NODES -------------------------------------------------------------------------

/// A contiguous range of hash slots, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
}

impl SlotRange {
    /// How many slots the range holds (at least 1).
    pub fn count(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }
}

impl fmt::Display for SlotRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A slot being moved: `[slot->-<to>]` (migrating away) or `[slot-<-<from>]` (importing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMove {
    pub slot: u16,
    /// The other node's id.
    pub node: String,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    /// Empty for a node whose address is not known yet (`noaddr`).
    pub ip: String,
    pub port: u16,
    pub bus_port: u16,
    pub hostname: Option<String>,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`, `nofailover`.
    pub flags: Vec<String>,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    pub ping_sent: u64,
    pub pong_recv: u64,
    pub config_epoch: u64,
    pub link_connected: bool,
    pub slots: Vec<SlotRange>,
    pub migrating: Vec<SlotMove>,
    pub importing: Vec<SlotMove>,
}

impl ClusterNode {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
    pub fn is_myself(&self) -> bool {
        self.has("myself")
    }
    pub fn is_master(&self) -> bool {
        self.has("master")
    }
    pub fn is_replica(&self) -> bool {
        self.has("slave")
    }
    /// Flagged `fail` (agreed) or `fail?` (suspected by this node).
    pub fn is_failing(&self) -> bool {
        self.has("fail") || self.has("fail?")
    }
    pub fn slot_count(&self) -> u32 {
        self.slots.iter().map(SlotRange::count).sum()
    }
}

/// Parse `CLUSTER NODES`.
pub fn cluster_nodes(text: &str) -> Result<Vec<ClusterNode>, ParseError> {
    if let Some(e) = redis_error(text) {
        return Err(ParseError::RedisError(e));
    }
    lines(text)
        .filter(|l| !l.trim().is_empty())
        .map(cluster_node)
        .collect()
}

fn cluster_node(line: &str) -> Result<ClusterNode, ParseError> {
    const WHAT: &str = "CLUSTER NODES";
    let invalid = |field: &'static str, value: &str| ParseError::Invalid {
        what: WHAT,
        field,
        value: value.to_string(),
    };
    let parts: Vec<&str> = line.split_whitespace().collect();
    if parts.len() < 8 {
        return Err(invalid("node line", line));
    }
    let (addr, hostname) = match parts[1].split_once(',') {
        Some((a, h)) if !h.is_empty() => (a, Some(h.to_string())),
        Some((a, _)) => (a, None),
        None => (parts[1], None),
    };
    let (hostport, bus) = addr
        .split_once('@')
        .ok_or_else(|| invalid("address", parts[1]))?;
    let (ip, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| invalid("address", parts[1]))?;
    let port: u16 = port.parse().map_err(|_| invalid("port", parts[1]))?;
    let bus_port: u16 = bus.parse().map_err(|_| invalid("bus port", parts[1]))?;
    let number = |field: &'static str, v: &str| v.parse::<u64>().map_err(|_| invalid(field, v));
    let link_connected = match parts[7] {
        "connected" => true,
        "disconnected" => false,
        other => return Err(invalid("link state", other)),
    };
    let mut node = ClusterNode {
        id: parts[0].to_string(),
        ip: ip.to_string(),
        port,
        bus_port,
        hostname,
        flags: parts[2]
            .split(',')
            .filter(|f| !f.is_empty() && *f != "noflags")
            .map(str::to_string)
            .collect(),
        master_id: (parts[3] != "-").then(|| parts[3].to_string()),
        ping_sent: number("ping-sent", parts[4])?,
        pong_recv: number("pong-recv", parts[5])?,
        config_epoch: number("config-epoch", parts[6])?,
        link_connected,
        slots: Vec::new(),
        migrating: Vec::new(),
        importing: Vec::new(),
    };
    let slot = |v: &str| -> Result<u16, ParseError> {
        match v.parse::<u16>() {
            Ok(s) if s < 16384 => Ok(s),
            _ => Err(invalid("slot", v)),
        }
    };
    for s in &parts[8..] {
        if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            if let Some((n, to)) = inner.split_once("->-") {
                node.migrating.push(SlotMove {
                    slot: slot(n)?,
                    node: to.to_string(),
                });
            } else if let Some((n, from)) = inner.split_once("-<-") {
                node.importing.push(SlotMove {
                    slot: slot(n)?,
                    node: from.to_string(),
                });
            } else {
                return Err(invalid("slot", s));
            }
        } else if let Some((a, b)) = s.split_once('-') {
            let (start, end) = (slot(a)?, slot(b)?);
            if start > end {
                return Err(invalid("slot range", s));
            }
            node.slots.push(SlotRange { start, end });
        } else {
            let n = slot(s)?;
            node.slots.push(SlotRange { start: n, end: n });
        }
    }
    Ok(node)
}

/// How many distinct slots the masters in `nodes` serve (16384 when fully covered).
pub fn covered_slots(nodes: &[ClusterNode]) -> u32 {
    let mut seen = vec![false; 16384];
    for n in nodes.iter().filter(|n| n.is_master() && !n.is_failing()) {
        for r in &n.slots {
            for s in r.start..=r.end {
                seen[usize::from(s)] = true;
            }
        }
    }
    seen.iter().filter(|&&b| b).count() as u32
}

// ---- INFO ----------------------------------------------------------------------------------

/// `INFO [section]`: section name (as in `# Server`) → field → value. Fields before any
/// section header go under `""`.
pub type Info = BTreeMap<String, BTreeMap<String, String>>;

/// Parse `INFO`. Values keep everything after the first `:` (`db0:keys=1,expires=0,…`).
pub fn info(text: &str) -> Info {
    let mut out = Info::new();
    let mut section = String::new();
    for l in lines(text) {
        let l = l.trim();
        if let Some(name) = l.strip_prefix('#') {
            section = name.trim().to_string();
            out.entry(section.clone()).or_default();
        } else if let Some((k, v)) = l.split_once(':') {
            out.entry(section.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
    }
    out
}

// ---- redis-cli --cluster check -------------------------------------------------------------

/// A master as summarized at the top of `redis-cli --cluster check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMaster {
    pub address: String,
    /// The id prefix redis-cli prints (8 characters and `...`, as printed).
    pub id_prefix: String,
    pub keys: u64,
    pub slots: u32,
    pub replicas: u32,
}

/// `redis-cli --cluster check <node>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterCheck {
    pub masters: Vec<CheckMaster>,
    /// From `[OK] All N slots covered.`
    pub slots_covered: Option<u32>,
    /// From `[OK] N keys in M masters.`
    pub keys: Option<u64>,
    pub oks: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl ClusterCheck {
    /// No `[ERR]` and every slot covered.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.slots_covered == Some(16384)
    }
}

/// Remove ANSI colour sequences (`ESC [ … m`): redis-cli colours `--cluster` output even when
/// it is not writing to a terminal.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parse `redis-cli --cluster check` (colours and all).
pub fn cluster_check(text: &str) -> ClusterCheck {
    let mut c = ClusterCheck::default();
    for l in lines(text) {
        let l = strip_ansi(l);
        let l = l.trim();
        if let Some(m) = l.strip_prefix("[OK] ") {
            if let Some(n) = m
                .strip_prefix("All ")
                .and_then(|r| r.strip_suffix(" slots covered."))
            {
                c.slots_covered = n.parse().ok();
            }
            if let Some((n, _)) = m.split_once(" keys in ") {
                c.keys = n.parse().ok();
            }
            c.oks.push(m.to_string());
        } else if let Some(m) = l.strip_prefix("[WARNING] ") {
            c.warnings.push(m.to_string());
        } else if let Some(m) = l.strip_prefix("[ERR] ") {
            c.errors.push(m.to_string());
        } else if let Some(m) = check_master(l) {
            c.masters.push(m);
        } else if l.starts_with("Could not connect")
            || l.starts_with("[ERR]")
            || redis_error(l).is_some()
        {
            c.errors.push(l.to_string());
        }
    }
    c
}

/// `127.0.0.2:7001 (5d1f2a3b...) -> 0 keys | 5461 slots | 1 slaves.`
fn check_master(l: &str) -> Option<CheckMaster> {
    let (address, rest) = l.split_once(" (")?;
    let (id, rest) = rest.split_once(") -> ")?;
    let mut parts = rest.trim_end_matches('.').split(" | ");
    let keys = parts.next()?.strip_suffix(" keys")?.parse().ok()?;
    let slots = parts.next()?.strip_suffix(" slots")?.parse().ok()?;
    let replicas = parts.next()?.strip_suffix(" slaves")?.parse().ok()?;
    Some(CheckMaster {
        address: address.to_string(),
        id_prefix: id.to_string(),
        keys,
        slots,
        replicas,
    })
}
