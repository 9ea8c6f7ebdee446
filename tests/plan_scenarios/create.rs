//! From an empty region: the reference cluster's plan, its JSON form, the tags every resource
//! carries, and what blocks node creation.

use std::net::Ipv4Addr;

use redisctl::observed::tags;
use redisctl::plan::{self, Ec2Op, Op};
use redisctl::render;

use crate::fixtures::{empty_region, example};
use crate::sim::apply_and_converge;
use crate::snapshot;

#[test]
fn empty_region_creates_the_reference_cluster() {
    let spec = example();
    let o = empty_region();
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("empty-region", &render::plan::human(&p, false));
    let s = p.summary();
    // vpc, 3 subnets, igw, rt, 3 associations, sg, 3 rules (ssh, redis, bus), key pair, 3 nodes
    // 17 AWS resources, the CA, 4 steps in each of 3 nodes; then cluster create.
    assert_eq!((s.add, s.change, s.destroy, s.run), (33, 0, 0, 1));
    // The newest Ubuntu image is chosen, and encryption is at launch with the spec's key.
    let Op::Ec2(Ec2Op::RunInstance(run)) = &p.step("node.redis-node-1a").unwrap().ops[0] else {
        panic!()
    };
    assert_eq!(run.image_id, "ami-0bbbbbbbbbbbbbbb2");
    assert!(run.encrypted);
    assert_eq!(run.kms_key.as_deref(), Some("alias/aws/ebs"));
    assert_eq!(run.private_ip, Ipv4Addr::new(10, 0, 1, 10));
    apply_and_converge(&spec, o, &p);
}

#[test]
fn json_plan_is_versioned_and_carries_actions() {
    let spec = example();
    let p = plan::plan(&spec, &empty_region());
    let v: serde_json::Value = serde_json::from_str(&render::plan::json(&p)).unwrap();
    assert_eq!(v["format_version"], "1.1");
    assert_eq!(v["changes"], true);
    assert_eq!(v["summary"]["add"], 33);
    let node = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["address"] == "node.redis-node-1a")
        .unwrap();
    assert_eq!(node["action"], serde_json::json!(["create"]));
    assert!(
        node["depends_on"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "subnet.redis-subnet-1a")
    );
    assert!(
        v.get("ops").is_none() && node.get("ops").is_none(),
        "operations are not part of --json"
    );
}

#[test]
fn tags_of_every_resource_name_the_cluster_and_role() {
    let spec = example();
    let p = plan::plan(&spec, &empty_region());
    for step in &p.steps {
        for op in &step.ops {
            let t = match op {
                Op::Ec2(Ec2Op::CreateVpc { tags, .. })
                | Op::Ec2(Ec2Op::CreateSubnet { tags, .. })
                | Op::Ec2(Ec2Op::CreateInternetGateway { tags, .. })
                | Op::Ec2(Ec2Op::CreateRouteTable { tags, .. })
                | Op::Ec2(Ec2Op::CreateSecurityGroup { tags, .. })
                | Op::Ec2(Ec2Op::AllocateAddress { tags })
                | Op::Ec2(Ec2Op::CreateNatGateway { tags, .. })
                | Op::Ec2(Ec2Op::ImportKeyPair { tags, .. }) => tags,
                Op::Ec2(Ec2Op::RunInstance(r)) => {
                    assert_eq!(
                        r.volume_tags.get(tags::ROLE).map(String::as_str),
                        Some("volume")
                    );
                    &r.tags
                }
                _ => continue,
            };
            assert_eq!(
                t.get(tags::CLUSTER).map(String::as_str),
                Some("prod-redis"),
                "{}",
                step.address
            );
            assert!(
                t.contains_key(tags::ROLE) && t.contains_key("Name"),
                "{}",
                step.address
            );
            assert_eq!(
                t.get("data-classification").map(String::as_str),
                Some("phi")
            );
        }
    }
}

#[test]
fn no_ubuntu_image_blocks_node_creation() {
    let spec = example();
    let mut o = empty_region();
    o.images.clear();
    let p = plan::plan(&spec, &o);
    assert!(p.blockers().any(|n| n.subject == "nodes.ami"));
    let text = render::plan::human(&p, false);
    assert!(text.contains("cannot be applied"), "{text}");
}
