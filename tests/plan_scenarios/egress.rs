//! How the nodes reach the package archive (`network.egress`): public IPs through the internet
//! gateway, a NAT gateway in a public subnet of its own, or no way out at all; and the move
//! from one to another on a live cluster.

use redisctl::observed::Observed;
use redisctl::plan::{self, Ec2Op, Op, Plan, Ref, RouteTarget};
use redisctl::render;
use redisctl::spec::Spec;

use crate::fixtures::{empty_region, example_text, spec_from};
use crate::sim::{Sim, apply_and_converge, converged, observed_for};
use crate::snapshot;

fn private_ip_spec() -> Spec {
    spec_from(&example_text().replace("via = \"public-ip\"", "via = \"private-ip\""))
}

fn route_target(p: &Plan, address: &str) -> Option<RouteTarget> {
    p.step(address)
        .unwrap()
        .ops
        .iter()
        .find_map(|op| match op {
            Op::Ec2(Ec2Op::CreateRouteTable { target, .. })
            | Op::Ec2(Ec2Op::SetDefaultRoute { target, .. }) => Some(target.clone()),
            _ => None,
        })?
}

#[test]
fn private_nodes_leave_through_a_nat_gateway_in_a_public_subnet() {
    let spec = private_ip_spec();
    assert_eq!(spec.network.egress.as_str(), "nat-gateway");
    let o = empty_region();
    let p = plan::plan(&spec, &o);
    p.check_order().unwrap();
    snapshot("nat-gateway", &render::plan::human(&p, false));
    // The nodes' subnets give no public IP; their default route goes to the NAT gateway, whose
    // own subnet's goes to the internet gateway.
    for s in [
        "subnet.redis-subnet-1a",
        "subnet.redis-subnet-1b",
        "subnet.redis-subnet-1c",
    ] {
        let Op::Ec2(Ec2Op::CreateSubnet { map_public_ip, .. }) = &p.step(s).unwrap().ops[0] else {
            panic!("{s} is not created")
        };
        assert!(!map_public_ip, "{s} maps public IPs");
    }
    let Op::Ec2(Ec2Op::CreateSubnet { cidr, az, .. }) =
        &p.step("subnet.redis-nat-subnet-1a").unwrap().ops[0]
    else {
        panic!()
    };
    assert_eq!((cidr.as_str(), az.as_str()), ("10.0.0.0/24", "us-east-1a"));
    assert_eq!(
        route_target(&p, "route_table"),
        Some(RouteTarget::NatGateway(Ref::Step("nat_gateway".into())))
    );
    assert_eq!(
        route_target(&p, "nat_route_table"),
        Some(RouteTarget::InternetGateway(Ref::Step("igw".into())))
    );
    let nat = p.step("nat_gateway").unwrap();
    assert!(nat.depends_on.contains(&"nat_eip".to_string()));
    assert!(
        nat.depends_on
            .contains(&"subnet.redis-nat-subnet-1a".to_string())
    );
    assert!(
        p.step("route_table")
            .unwrap()
            .depends_on
            .contains(&"nat_gateway".to_string())
    );
    let o = apply_and_converge(&spec, o, &p);
    assert_eq!(o.nat_gateways.len(), 1);
    assert_eq!(o.addresses.len(), 1);

    // destroy removes the gateway before its address and its subnet.
    let d = plan::plan_destroy(&spec, &o);
    d.check_order().unwrap();
    let eip = d.step("nat_eip").unwrap();
    assert!(eip.depends_on.contains(&"nat_gateway".to_string()));
    let mut sim = Sim::new(&spec, o);
    sim.apply(&d);
    assert_eq!(sim.o.leftovers(), Vec::<String>::new());
}

#[test]
fn a_pending_nat_gateway_is_waited_for_before_the_nodes_need_it() {
    let spec = private_ip_spec();
    let mut o: Observed = converged(&spec);
    o.nat_gateways[0].state = "pending".into();
    let p = plan::plan(&spec, &o);
    let step = p.step("nat_gateway").expect("a step waits for the gateway");
    assert!(matches!(
        step.ops[0],
        Op::Ec2(Ec2Op::CreateNatGateway { .. })
    ));
    assert_eq!(p.summary().change, 1, "{}", render::plan::human(&p, false));
    apply_and_converge(&spec, o, &p);
}

#[test]
fn leaving_the_nat_gateway_removes_it_after_the_route_moves() {
    let private = private_ip_spec();
    let o = converged(&private);
    let public = spec_from(&example_text());
    let o = observed_for(&public, o);
    let p = plan::plan(&public, &o);
    p.check_order().unwrap();
    snapshot("nat-gateway-removed", &render::plan::human(&p, false));
    let nat = p
        .steps
        .iter()
        .find(|s| s.address.starts_with("nat_gateway["))
        .expect("the gateway is deleted");
    assert!(nat.depends_on.contains(&"route_table".to_string()));
    let o = apply_and_converge(&public, o, &p);
    assert!(o.nat_gateways.is_empty() && o.addresses.is_empty());
    assert!(o.subnets.iter().all(|s| s.map_public_ip_on_launch));
}

#[test]
fn no_way_out_means_no_default_route() {
    let spec = spec_from(
        &example_text()
            .replace("via = \"public-ip\"", "via = \"private-ip\"")
            .replace(
                "ami = \"ubuntu-24.04\"",
                "ami = \"ami-0123456789abcdef0\"\nimage_has_redis = true",
            )
            .replace(
                "vpc_cidr = \"10.0.0.0/16\"",
                "vpc_cidr = \"10.0.0.0/16\"\negress = \"none\"",
            ),
    );
    let o = empty_region();
    let p = plan::plan(&spec, &o);
    assert_eq!(route_target(&p, "route_table"), None);
    assert!(p.step("nat_gateway").is_none() && p.step("nat_eip").is_none());
    let o = apply_and_converge(&spec, o, &p);
    assert!(
        o.route_tables[0]
            .routes
            .iter()
            .all(|r| r.destination != "0.0.0.0/0")
    );
}
