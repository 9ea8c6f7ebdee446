use std::path::Path;

use super::*;

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/cluster.toml.example")).unwrap()
}

fn parse_text(text: &str) -> Result<(Spec, Vec<Diagnostic>), Vec<Diagnostic>> {
    parse(text, Path::new("/specs"), &SourceMap::new(text))
}

#[test]
fn the_example_is_valid_with_one_warning() {
    let (spec, warnings) = parse_text(&example()).unwrap();
    assert_eq!(spec.cluster.name, "prod-redis");
    assert_eq!(spec.nodes.nodes.len(), 3);
    assert_eq!(spec.operator_user().name, "admin");
    let paths: Vec<_> = warnings
        .iter()
        .map(|w| w.path.as_deref().unwrap())
        .collect();
    assert_eq!(paths, ["nodes.replicas_per_master"]);
}

#[test]
fn minimal_spec_gets_the_reference_defaults() {
    let text = r#"
[cluster]
name = "mini"
[security_group]
ssh_cidrs = ["198.51.100.4/32"]
[[users]]
name = "admin"
password_env = "A"
commands = ["+@all"]
operator = true
"#;
    let (spec, _) = parse_text(text).unwrap();
    assert_eq!(spec.cluster.region, "us-east-1");
    assert_eq!(spec.cluster.state_dir, Path::new("/specs/.redisctl/mini"));
    let subnets: Vec<_> = spec
        .network
        .subnets
        .iter()
        .map(|s| format!("{} {} {}", s.name, s.az, s.cidr))
        .collect();
    assert_eq!(
        subnets,
        [
            "redis-subnet-1a us-east-1a 10.0.1.0/24",
            "redis-subnet-1b us-east-1b 10.0.2.0/24",
            "redis-subnet-1c us-east-1c 10.0.3.0/24"
        ]
    );
    let nodes: Vec<_> = spec
        .nodes
        .nodes
        .iter()
        .map(|n| format!("{} {} {}", n.name, n.subnet, n.private_ip))
        .collect();
    assert_eq!(
        nodes,
        [
            "redis-node-1a redis-subnet-1a 10.0.1.10",
            "redis-node-1b redis-subnet-1b 10.0.2.10",
            "redis-node-1c redis-subnet-1c 10.0.3.10"
        ]
    );
    assert_eq!(
        spec.security_group.redis_cidrs,
        ["10.0.0.0/16".parse::<ipnet::Ipv4Net>().unwrap()]
    );
    assert_eq!(spec.ssh.key_name, "redisctl-mini");
    assert_eq!(
        spec.ssh.private_key,
        Path::new("/specs/.redisctl/mini/ssh_ed25519")
    );
    assert_eq!(spec.redis.bus_port(), 16379);
    assert!(spec.nodes.root_volume.encrypted);
    assert_eq!(spec.nodes.root_volume.kms_key, "alias/aws/ebs");
    assert_eq!(spec.tls.protocols, [TlsProtocol::V1_2, TlsProtocol::V1_3]);
}

#[test]
fn replicas_spread_round_robin_over_the_subnets() {
    let text = example()
        .replace("replicas_per_master = 0", "replicas_per_master = 1")
        .split("\n[[nodes.node]]")
        .next()
        .unwrap()
        .to_string()
        + "\n"
        + &example()[example().find("[ssh]").unwrap()..];
    let (spec, warnings) = parse_text(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let nodes: Vec<_> = spec
        .nodes
        .nodes
        .iter()
        .map(|n| format!("{} {}", n.name, n.private_ip))
        .collect();
    assert_eq!(
        nodes,
        [
            "redis-node-1a 10.0.1.10",
            "redis-node-1b 10.0.2.10",
            "redis-node-1c 10.0.3.10",
            "redis-node-1a-2 10.0.1.11",
            "redis-node-1b-2 10.0.2.11",
            "redis-node-1c-2 10.0.3.11"
        ]
    );
}

#[test]
fn resolved_output_round_trips_to_the_same_spec() {
    let (spec, _) = parse_text(&example()).unwrap();
    let resolved = spec.to_toml();
    let (again, _) = parse_text(&resolved).unwrap();
    assert_eq!(spec, again);
    assert!(resolved.contains("kms_key = \"alias/aws/ebs\""));
    assert!(
        !resolved.contains("password ="),
        "no password key is ever written"
    );
}

#[test]
fn all_errors_are_reported_at_once_in_file_order() {
    let text = example()
        .replace("cidr = \"10.0.2.0/24\"", "cidr = \"10.1.2.0/24\"")
        .replace("private_ip = \"10.0.3.10\"", "private_ip = \"10.0.3.2\"");
    let errors = parse_text(&text).unwrap_err();
    let errs: Vec<_> = errors
        .iter()
        .filter(|d| d.is_error())
        .map(|d| (d.path.clone().unwrap(), d.location.unwrap().line))
        .collect();
    assert_eq!(errs.len(), 3, "{errors:#?}");
    assert_eq!(errs[0].0, "network.subnets[1].cidr");
    // The node in the moved subnet is now outside it, and node 3's address is reserved.
    assert_eq!(errs[1].0, "nodes.node[1].private_ip");
    assert_eq!(errs[2].0, "nodes.node[2].private_ip");
    assert!(errs.windows(2).all(|w| w[0].1 <= w[1].1));
}

/// The example with its subnets replaced by `count` copies of one subnet.
fn with_subnets(count: usize) -> String {
    let text = example();
    let start = text.find("[[network.subnets]]").unwrap();
    let end = text.find("[security_group]").unwrap();
    let subnet = "[[network.subnets]]\naz = \"us-east-1a\"\ncidr = \"10.0.1.0/24\"\n\n";
    format!("{}{}{}", &text[..start], subnet.repeat(count), &text[end..])
}

#[test]
fn overlapping_subnets_are_one_error_each_not_one_per_pair() {
    // Found by fuzzing: thousands of copies of a subnet made one error per pair (millions),
    // each located in the file; validation ran for minutes.
    let errors = parse_text(&with_subnets(150)).unwrap_err();
    let overlaps = errors
        .iter()
        .filter(|d| d.message.contains("overlaps"))
        .count();
    assert_eq!(overlaps, 149, "one for each subnet after the first");
}

#[test]
fn more_subnets_than_a_vpc_holds_is_one_error() {
    let errors = parse_text(&with_subnets(201)).unwrap_err();
    let subnet_errors: Vec<_> = errors
        .iter()
        .filter(|d| d.is_error() && d.path.as_deref().unwrap_or("").starts_with("network."))
        .collect();
    assert_eq!(subnet_errors.len(), 1, "{subnet_errors:#?}");
    assert_eq!(subnet_errors[0].path.as_deref(), Some("network.subnets"));
    assert!(
        subnet_errors[0]
            .message
            .contains("201 subnets: a VPC holds at most 200"),
        "{}",
        subnet_errors[0].message
    );
}

fn load_error(bytes: &[u8]) -> Vec<Diagnostic> {
    match from_bytes(Path::new("/specs/cluster.toml"), bytes) {
        Err(LoadError::Invalid { diagnostics, .. }) => diagnostics,
        Ok(_) => panic!("read as a valid spec"),
        Err(e) => panic!("not a diagnostic: {e}"),
    }
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_at_the_byte() {
    let mut bytes = b"[cluster]\nname = \"ab".to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(b"\"\n");
    let d = load_error(&bytes);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message.contains("not UTF-8 text: byte 0xff"),
        "{}",
        d[0].message
    );
    assert_eq!(
        d[0].location,
        Some(Location {
            line: 2,
            column: 11
        })
    );
}

#[test]
fn a_file_past_the_limit_is_one_error() {
    let mut text = example().into_bytes();
    text.resize(MAX_SPEC_BYTES + 1, b'\n');
    let d = load_error(&text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].message.contains("larger than 1024 KiB"),
        "{}",
        d[0].message
    );
    // At the limit, the file is read as a spec.
    text.truncate(MAX_SPEC_BYTES);
    assert!(from_bytes(Path::new("/specs/cluster.toml"), &text).is_ok());
}

#[test]
fn a_long_value_is_quoted_by_its_start() {
    // Found by fuzzing (the saved-plan reader had the same): serde quotes a string of the wrong
    // type whole, so a megabyte value made a megabyte message.
    let long = "x".repeat(100_000);
    let text = example()
        .replace("masters = 3", &format!("masters = \"{long}\""))
        .replace("region = \"us-east-1\"", &format!("region = \"{long}\""));
    let errors = parse_text(&text).unwrap_err();
    assert!(!errors.is_empty());
    for d in &errors {
        assert!(d.message.len() < 300, "{}…", &d.message[..300]);
    }
    let errors =
        parse_text(&example().replace("region = \"us-east-1\"", &format!("region = \"{long}\"")))
            .unwrap_err();
    assert!(
        errors.iter().any(|d| d
            .message
            .starts_with(&format!("`{}…` is not an AWS region", "x".repeat(60)))),
        "{errors:?}"
    );
}

#[test]
fn a_password_rotation_names_the_previous_password_and_round_trips() {
    let text = example().replace(
        "password_env = \"REDIS_APP_PASSWORD\"",
        "password_env = \"REDIS_APP_PASSWORD_NEW\"\nprevious_password_env = \"REDIS_APP_PASSWORD\"",
    );
    let (spec, _) = parse_text(&text).unwrap();
    let app = spec.users.iter().find(|u| u.name == "app").unwrap();
    assert_eq!(
        app.previous_password,
        Some(types::SecretSource::Env("REDIS_APP_PASSWORD".into()))
    );
    let (again, _) = parse_text(&spec.to_toml()).unwrap();
    assert_eq!(spec, again);

    // The same source twice, both kinds at once, a disabled user: each an error at its key.
    let errors_at = |text: &str| -> Vec<(String, String)> {
        parse_text(text)
            .unwrap_err()
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| (d.path.clone().unwrap(), d.message.clone()))
            .collect()
    };
    let same = example().replace(
        "password_env = \"REDIS_APP_PASSWORD\"",
        "password_env = \"REDIS_APP_PASSWORD\"\nprevious_password_env = \"REDIS_APP_PASSWORD\"",
    );
    let e = errors_at(&same);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "users[1].previous_password_env");
    assert!(
        e[0].1.contains("same source as the current password"),
        "{e:?}"
    );
    let both = example().replace(
        "password_env = \"REDIS_APP_PASSWORD\"",
        "password_env = \"N\"\nprevious_password_env = \"O\"\nprevious_password_file = \"o.txt\"",
    );
    assert_eq!(errors_at(&both)[0].0, "users[1].previous_password_file");
    let disabled = example().replace(
        "password_env = \"REDIS_DEV_PASSWORD\"",
        "enabled = false\nprevious_password_env = \"O\"",
    );
    let e = errors_at(&disabled);
    assert_eq!(e[0].0, "users[2].previous_password_env", "{e:?}");
    assert!(e[0].1.contains("disabled"), "{e:?}");
}

#[test]
fn a_ca_rotation_stage_is_read_round_trips_and_a_wrong_one_is_an_error_at_its_line() {
    for (stage, want) in [
        ("trust", types::CaRotation::Trust),
        ("reissue", types::CaRotation::Reissue),
        ("abort", types::CaRotation::Abort),
    ] {
        let text = example().replace(
            "# ca_rotation = \"trust\"",
            &format!("ca_rotation = \"{stage}\""),
        );
        let (spec, _) = parse_text(&text).unwrap();
        assert_eq!(spec.tls.ca_rotation, Some(want));
        let (again, _) = parse_text(&spec.to_toml()).unwrap();
        assert_eq!(spec, again);
    }
    assert_eq!(parse_text(&example()).unwrap().0.tls.ca_rotation, None);
    let text = example().replace("# ca_rotation = \"trust\"", "ca_rotation = \"finish\"");
    let line = text
        .lines()
        .position(|l| l.starts_with("ca_rotation"))
        .unwrap()
        + 1;
    let e: Vec<_> = parse_text(&text)
        .unwrap_err()
        .into_iter()
        .filter(|d| d.is_error())
        .collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path.as_deref(), Some("tls.ca_rotation"));
    assert_eq!(e[0].location.as_ref().map(|l| l.line), Some(line), "{e:?}");
    assert!(
        e[0].message
            .contains("`finish` is not a stage of a CA rotation"),
        "{e:?}"
    );
}
