//! Redis ACL rules: parsing the spec's command rules, deciding what a rule list allows (the
//! same last-match-wins semantics as Redis 7.0), and rendering `users.acl` lines.
//!
//! Only the commands redisctl reasons about are in the category table below (those it needs for
//! cluster operations and those whose absence breaks cluster-aware clients). That is enough to
//! answer "can this user run X" for them exactly; it is not a full command table.

use std::fmt;

/// ACL categories of Redis 7.0 (`ACL CAT`).
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
    "all",
];

/// One command rule: `+@read`, `-flushall`, `+cluster|slots`, `allcommands`, `nocommands`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRule {
    pub allow: bool,
    pub target: RuleTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleTarget {
    Category(String),
    Command(String),
    Subcommand(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("`{0}` must start with + or - (or be allcommands / nocommands)")]
    NoSign(String),
    #[error("`{0}` names no category or command")]
    Empty(String),
    #[error("`{rule}`: unknown ACL category `@{category}` (known: {known})")]
    UnknownCategory {
        rule: String,
        category: String,
        known: String,
    },
    #[error(
        "`{0}`: a command name has only lower-case letters, digits and - _ (and one | for a subcommand)"
    )]
    BadName(String),
}

impl CommandRule {
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        match text {
            "allcommands" => {
                return Ok(CommandRule {
                    allow: true,
                    target: RuleTarget::Category("all".into()),
                });
            }
            "nocommands" => {
                return Ok(CommandRule {
                    allow: false,
                    target: RuleTarget::Category("all".into()),
                });
            }
            _ => {}
        }
        let (allow, rest) = match text.as_bytes().first() {
            Some(b'+') => (true, &text[1..]),
            Some(b'-') => (false, &text[1..]),
            _ => return Err(RuleError::NoSign(text.into())),
        };
        if rest.is_empty() || rest == "@" {
            return Err(RuleError::Empty(text.into()));
        }
        if let Some(cat) = rest.strip_prefix('@') {
            if !CATEGORIES.contains(&cat) {
                return Err(RuleError::UnknownCategory {
                    rule: text.into(),
                    category: cat.into(),
                    known: CATEGORIES.join(", "),
                });
            }
            return Ok(CommandRule {
                allow,
                target: RuleTarget::Category(cat.into()),
            });
        }
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        let target = match rest.split_once('|') {
            Some((cmd, sub)) if valid(cmd) && valid(sub) => {
                RuleTarget::Subcommand(cmd.into(), sub.into())
            }
            None if valid(rest) => RuleTarget::Command(rest.into()),
            _ => return Err(RuleError::BadName(text.into())),
        };
        Ok(CommandRule { allow, target })
    }
}

impl fmt::Display for CommandRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.allow { '+' } else { '-' };
        match &self.target {
            RuleTarget::Category(c) => write!(f, "{sign}@{c}"),
            RuleTarget::Command(c) => write!(f, "{sign}{c}"),
            RuleTarget::Subcommand(c, s) => write!(f, "{sign}{c}|{s}"),
        }
    }
}

/// Categories of the commands redisctl reasons about (Redis 7.0 `COMMAND INFO`).
fn categories_of(command: &str, sub: Option<&str>) -> &'static [&'static str] {
    match (command, sub) {
        ("ping", None) => &["fast", "connection"],
        ("info", None) => &["slow", "dangerous"],
        ("command", None) => &["slow", "connection"],
        ("dbsize", None) => &["keyspace", "read", "fast"],
        ("get", None) => &["read", "string", "fast"],
        ("set", None) => &["write", "string", "slow"],
        ("flushall", None) => &["keyspace", "write", "slow", "dangerous"],
        ("bgrewriteaof", None) | ("save", None) => &["admin", "slow", "dangerous"],
        (
            "cluster",
            Some(
                "slots" | "shards" | "info" | "nodes" | "myid" | "keyslot" | "getkeysinslot"
                | "countkeysinslot",
            ),
        ) => &["slow"],
        ("migrate", None) | ("restore", None) => &["keyspace", "write", "slow", "dangerous"],
        ("asking", None) => &["fast", "connection"],
        ("cluster", Some(_)) => &["admin", "slow", "dangerous"],
        (
            "acl",
            Some("load" | "save" | "list" | "users" | "setuser" | "deluser" | "getuser" | "log"),
        ) => &["admin", "slow", "dangerous"],
        ("client", Some("kill")) => &["admin", "slow", "dangerous", "connection"],
        ("acl", Some(_)) => &["slow"],
        ("config", Some(_)) => &["admin", "slow", "dangerous"],
        _ => &[],
    }
}

/// Whether the ordered rule list allows `command` (`"cluster|slots"` for a subcommand),
/// following Redis: rules apply left to right and the last one that covers the command wins.
pub fn allows(rules: &[CommandRule], command: &str) -> bool {
    let (cmd, sub) = match command.split_once('|') {
        Some((c, s)) => (c, Some(s)),
        None => (command, None),
    };
    let cats = categories_of(cmd, sub);
    let mut allowed = false;
    for rule in rules {
        let covers = match &rule.target {
            RuleTarget::Category(c) => c == "all" || cats.contains(&c.as_str()),
            RuleTarget::Command(c) => c == cmd,
            RuleTarget::Subcommand(c, s) => c == cmd && Some(s.as_str()) == sub,
        };
        if covers {
            allowed = rule.allow;
        }
    }
    allowed
}

/// What redisctl's own user must be able to run: the cluster's formation (CLUSTER ADDSLOTS /
/// SET-CONFIG-EPOCH / MEET / REPLICATE, INFO, PING), the reset of a half-formed
/// cluster, health checks, ACL changes without restart (`ACL SETUSER` per user from the ACL
/// file, `ACL USERS` and `ACL DELUSER` for users taken out, `CLIENT KILL USER` for users turned
/// off, `ACL LOAD` as the fallback), `ACL LIST` for verify's
/// look at the users Redis runs with, the durability steps before a volume swap, slot moves
/// (`redis-cli --cluster reshard`: CLUSTER SETSLOT / GETKEYSINSLOT / COUNTKEYSINSLOT, MIGRATE,
/// which RESTOREs on the target as the same user, ASKING) and a node's leaving (CLUSTER FORGET
/// on every other node, CLUSTER RESET on it).
pub const OPERATOR_COMMANDS: &[&str] = &[
    "ping",
    "info",
    "dbsize",
    "cluster|info",
    "cluster|nodes",
    "cluster|myid",
    "cluster|meet",
    "cluster|addslots",
    "cluster|set-config-epoch",
    "cluster|replicate",
    "cluster|failover",
    "cluster|reset",
    "cluster|forget",
    "cluster|setslot",
    "cluster|getkeysinslot",
    "cluster|countkeysinslot",
    "migrate",
    "restore",
    "asking",
    "acl|load",
    "acl|list",
    "acl|users",
    "acl|setuser",
    "acl|deluser",
    "client|kill",
    "bgrewriteaof",
    "save",
];

/// What cluster-aware client libraries (redis-py's RedisCluster, Lettuce, go-redis) call to
/// learn the topology.
pub const CLUSTER_CLIENT_COMMANDS: &[&str] = &["cluster|slots", "cluster|shards", "command"];

/// The commands in `required` that `rules` does not allow.
pub fn missing<'a>(rules: &[CommandRule], required: &[&'a str]) -> Vec<&'a str> {
    required
        .iter()
        .copied()
        .filter(|c| !allows(rules, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<CommandRule> {
        list.iter()
            .map(|r| CommandRule::parse(r).unwrap())
            .collect()
    }

    #[test]
    fn parses_and_round_trips() {
        for r in [
            "+@all",
            "-@dangerous",
            "+get",
            "-flushall",
            "+cluster|slots",
        ] {
            assert_eq!(CommandRule::parse(r).unwrap().to_string(), r);
        }
        assert_eq!(
            CommandRule::parse("allcommands").unwrap().to_string(),
            "+@all"
        );
        assert_eq!(
            CommandRule::parse("nocommands").unwrap().to_string(),
            "-@all"
        );
    }

    #[test]
    fn refuses_bad_rules() {
        assert!(matches!(
            CommandRule::parse("@read"),
            Err(RuleError::NoSign(_))
        ));
        assert!(matches!(
            CommandRule::parse("+@reads"),
            Err(RuleError::UnknownCategory { .. })
        ));
        assert!(matches!(
            CommandRule::parse("+GET"),
            Err(RuleError::BadName(_))
        ));
        assert!(matches!(CommandRule::parse("+"), Err(RuleError::Empty(_))));
        assert!(matches!(
            CommandRule::parse("+a|b|c"),
            Err(RuleError::BadName(_))
        ));
    }

    #[test]
    fn last_match_wins() {
        let r = rules(&["+@all", "-@dangerous"]);
        assert!(!allows(&r, "flushall"));
        assert!(!allows(&r, "info"));
        assert!(allows(&r, "cluster|slots"));
        let r = rules(&[
            "-@all",
            "+@read",
            "+@write",
            "-@dangerous",
            "+cluster|slots",
        ]);
        assert!(allows(&r, "set"));
        assert!(allows(&r, "cluster|slots"));
        assert!(!allows(&r, "cluster|shards"));
        assert!(!allows(&r, "command"));
        assert!(!allows(&r, "flushall"));
        let r = rules(&["+cluster", "-cluster|meet"]);
        assert!(allows(&r, "cluster|nodes"));
        assert!(!allows(&r, "cluster|meet"));
    }

    #[test]
    fn operator_needs() {
        assert!(missing(&rules(&["+@all"]), OPERATOR_COMMANDS).is_empty());
        let m = missing(&rules(&["+@all", "-@dangerous"]), OPERATOR_COMMANDS);
        assert!(m.contains(&"info") && m.contains(&"cluster|meet"));
    }
}
