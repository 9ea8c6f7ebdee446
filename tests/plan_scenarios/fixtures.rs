//! The worlds the scenarios start from: specs (cluster.toml.example and edits of it), the
//! empty region, Ubuntu images, the scenarios' clock and stand-in secrets.

use std::path::Path;
use std::time::{Duration, SystemTime};

use redisctl::observed::{self, Image, Observed};
use redisctl::spec::secrets::Secret;
use redisctl::spec::{self, SourceMap, Spec};

pub const LOCAL_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForPlannerScenarios0123456789abcd redisctl";

pub fn spec_from(text: &str) -> Spec {
    let (spec, _) =
        spec::parse(text, Path::new("/ops"), &SourceMap::new(text)).expect("valid spec");
    spec
}

pub fn example_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml.example")).unwrap()
}

pub fn example() -> Spec {
    spec_from(&example_text())
}

/// The region before anything was made: only Canonical's images, and the local SSH key.
pub fn empty_region() -> Observed {
    Observed {
        images: vec![
            image("ami-0aaaaaaaaaaaaaaa1", "20240423"),
            image("ami-0bbbbbbbbbbbbbbb2", "20250115"),
        ],
        local_public_key: Some(LOCAL_KEY.into()),
        local: observed::Local {
            now: NOW,
            ..Default::default()
        },
        ..Observed::default()
    }
}

pub fn image(id: &str, date: &str) -> Image {
    Image {
        id: id.into(),
        name: format!("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-{date}"),
        creation_date: format!(
            "{}-{}-{}T00:00:00.000Z",
            &date[..4],
            &date[4..6],
            &date[6..]
        ),
        root_device_name: "/dev/sda1".into(),
        architecture: "x86_64".into(),
    }
}

/// The clock of every scenario: 2026-11-18.
pub const NOW: u64 = 1_795_000_000;

pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

/// Stand-ins for the password sources (never real secrets): as `read_all` gives them, each
/// user's current password, then its previous one while it is rotated.
pub fn secrets(spec: &Spec) -> Vec<(String, Secret)> {
    let mut out = Vec::new();
    for u in &spec.users {
        out.push((u.name.clone(), Secret::new(format!("pw-of-{}", u.name))));
        if u.previous_password.is_some() {
            out.push((u.name.clone(), Secret::new(format!("old-pw-of-{}", u.name))));
        }
    }
    out
}
