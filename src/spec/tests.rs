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
