//! What the network's unit tests share: the reference cluster's [`View`] (with a NAT
//! gateway or without), its hosts, and a chain cut out of a rendered table.

use super::rules::Host;
use super::view::{Group, Instance, NatGateway, RouteTable, Rule, View};

pub fn rule(protocol: &str, ports: Option<(i64, i64)>, cidrs: &[&str], groups: &[&str]) -> Rule {
    Rule {
        protocol: protocol.into(),
        from: ports.map(|p| p.0),
        to: ports.map(|p| p.1),
        cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn inst(id: &str, ip: &str, subnet: &str, groups: &[&str], public: bool) -> Instance {
    Instance {
        id: id.into(),
        state: "running".into(),
        private_ip: Some(ip.parse().unwrap()),
        subnet: Some(subnet.into()),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        has_public_ip: public,
    }
}

/// The reference cluster: two nodes in a public subnet, SSH from the operator, Redis from
/// the VPC, the bus from the group itself.
pub fn cluster() -> View {
    let mut v = View {
        instances: vec![
            inst("i-a", "10.0.1.10", "subnet-1", &["sg-redis"], true),
            inst("i-b", "10.0.2.10", "subnet-2", &["sg-redis"], true),
            inst("i-x", "10.0.3.50", "subnet-3", &["sg-other"], false),
        ],
        ..View::default()
    };
    for s in ["subnet-1", "subnet-2", "subnet-3"] {
        v.subnets.insert(s.into(), "vpc-1".into());
    }
    v.route_tables = vec![
        RouteTable {
            vpc: "vpc-1".into(),
            main: true,
            subnets: vec![],
            routes: vec![("10.0.0.0/16".into(), "local".into())],
        },
        RouteTable {
            vpc: "vpc-1".into(),
            main: false,
            subnets: vec!["subnet-1".into(), "subnet-2".into()],
            routes: vec![
                ("10.0.0.0/16".into(), "local".into()),
                ("0.0.0.0/0".into(), "igw-1".into()),
            ],
        },
    ];
    v.gateways.insert("igw-1".into(), "vpc-1".into());
    v.groups.insert(
        "sg-redis".into(),
        Group {
            ingress: vec![
                rule("tcp", Some((22, 22)), &["203.0.113.7/32"], &[]),
                rule("tcp", Some((6379, 6379)), &["10.0.0.0/16"], &[]),
                rule("tcp", Some((16379, 16379)), &[], &["sg-redis"]),
            ],
            egress: vec![rule("-1", None, &["0.0.0.0/0"], &[])],
        },
    );
    v
}

pub fn hosts() -> Vec<Host> {
    vec![
        Host {
            id: "i-a".into(),
            private_ip: "10.0.1.10".parse().unwrap(),
            public_ip: Some("198.51.100.10".parse().unwrap()),
        },
        Host {
            id: "i-x".into(),
            private_ip: "10.0.3.50".parse().unwrap(),
            public_ip: None,
        },
    ]
}

/// The cluster's VPC with a private subnet (subnet-3) routing to a NAT gateway in subnet-1.
pub fn with_nat(state: &str) -> View {
    let mut v = cluster();
    v.route_tables.push(RouteTable {
        vpc: "vpc-1".into(),
        main: false,
        subnets: vec!["subnet-3".into()],
        routes: vec![
            ("10.0.0.0/16".into(), "local".into()),
            ("0.0.0.0/0".into(), "nat-1".into()),
        ],
    });
    v.nat_gateways.insert(
        "nat-1".into(),
        NatGateway {
            subnet: "subnet-1".into(),
            state: state.into(),
            public_ip: Some("198.51.100.3".parse().unwrap()),
        },
    );
    v
}

/// The chain `name` of a rendered table, up to its closing brace.
pub fn chain(rules: &str, name: &str) -> String {
    let start = rules.find(&format!("chain {name} {{")).unwrap();
    rules[start..start + rules[start..].find("  }").unwrap()].to_string()
}
