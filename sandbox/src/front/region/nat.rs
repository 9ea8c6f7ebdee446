//! NAT gateways in time: `pending` after the create, `deleting` after the delete, and until
//! it is `deleted` a NAT gateway holds its subnet, its Elastic IP and its VPC's internet
//! gateway (EC2 refuses to delete or detach them). The network starts and stops using a
//! gateway from the states shown here ([`Region::nat_states`]).

use super::{NAT_DELETING_SECS, NAT_PENDING_SECS, Refusal, Region, named};
use crate::front::moto::param;
use crate::xml;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A NAT gateway's timeline and what it holds until it is `deleted`.
pub(super) struct NatClock {
    subnet: Option<String>,
    vpc: Option<String>,
    allocations: Vec<String>,
    public_ips: Vec<String>,
    available_at: Instant,
    /// Set by DeleteNatGateway: `deleting` until then, `deleted` after.
    deleted_at: Option<Instant>,
}

impl NatClock {
    fn deleted(&self, now: Instant) -> bool {
        self.deleted_at.is_some_and(|t| now >= t)
    }
}

impl Region {
    /// The state a NAT gateway shows now when it differs from moto's (`available` at once,
    /// `deleted` at once): `pending` after its create, `deleting` after its delete.
    pub fn nat_state(&self, id: &str, now: Instant) -> Option<&'static str> {
        let n = self.nats.get(id)?;
        match n.deleted_at {
            Some(t) if now < t => Some("deleting"),
            Some(_) => None,
            None if now < n.available_at => Some("pending"),
            None => None,
        }
    }

    /// Every NAT gateway whose state differs from moto's now (for the network).
    pub fn nat_states(&self, now: Instant) -> HashMap<String, &'static str> {
        self.nats
            .keys()
            .filter_map(|id| Some((id.clone(), self.nat_state(id, now)?)))
            .collect()
    }

    /// How long until a NAT gateway just created is `available` (the network is decided again
    /// then).
    pub fn nat_available_in(&self, id: &str, now: Instant) -> Option<Duration> {
        let n = self.nats.get(id)?;
        (n.deleted_at.is_none() && now < n.available_at).then(|| n.available_at - now)
    }

    /// While a NAT gateway is not `deleted`, its subnet, its VPC's internet gateway and its
    /// Elastic IP are in use; a delete of an unknown NAT gateway is refused as EC2 does.
    pub(super) fn nat_in_use(
        &self,
        action: &str,
        params: &[(String, String)],
        now: Instant,
    ) -> Option<Refusal> {
        let p = |name: &str| param(params, name);
        if action == "DeleteNatGateway" {
            let id = p("NatGatewayId")?;
            return (!self.nats.contains_key(id)).then(|| Refusal {
                code: "NatGatewayNotFound",
                message: format!("The Nat Gateway {id} was not found"),
            });
        }
        let mut live = self.nats.iter().filter(|(_, n)| !n.deleted(now));
        live.find_map(|(id, n)| match action {
            "DeleteSubnet" => named(&n.subnet, params, "SubnetId").map(Refusal::subnet_in_use),
            "DetachInternetGateway" if !n.public_ips.is_empty() => {
                named(&n.vpc, params, "VpcId").map(Refusal::addresses_mapped)
            }
            "ReleaseAddress" => {
                let by_id = p("AllocationId").filter(|a| n.allocations.iter().any(|h| h == a));
                let by_ip = p("PublicIp").filter(|a| n.public_ips.iter().any(|h| h == a));
                by_id.or(by_ip).map(|a| Refusal {
                    code: "InvalidIPAddress.InUse",
                    message: format!("Address {a} is in use (by {id})."),
                })
            }
            _ => None,
        })
    }

    /// The NAT gateways' side of [`Region::record`].
    pub(super) fn record_nat(
        &mut self,
        action: &str,
        params: &[(String, String)],
        body: &str,
        now: Instant,
    ) -> Result<()> {
        match action {
            "CreateNatGateway" => {
                let doc = xml::parse(body)?;
                let gw = doc
                    .descendants()
                    .find(|n| n.is_element() && n.tag_name().name() == "natGateway")
                    .context("moto's CreateNatGateway answer has no natGateway")?;
                let id = xml::child_text(gw, "natGatewayId")
                    .context("moto's CreateNatGateway answer has no natGatewayId")?;
                let addresses = xml::child(gw, "natGatewayAddressSet")
                    .map(|s| s.children().filter(|c| c.is_element()).collect::<Vec<_>>())
                    .unwrap_or_default();
                self.nats.insert(
                    id,
                    NatClock {
                        subnet: xml::child_text(gw, "subnetId"),
                        vpc: xml::child_text(gw, "vpcId"),
                        allocations: addresses
                            .iter()
                            .filter_map(|a| xml::child_text(*a, "allocationId"))
                            .collect(),
                        public_ips: addresses
                            .iter()
                            .filter_map(|a| xml::child_text(*a, "publicIp"))
                            .collect(),
                        available_at: now + self.window(NAT_PENDING_SECS),
                        deleted_at: None,
                    },
                );
            }
            "DeleteNatGateway" => {
                let until = now + self.window(NAT_DELETING_SECS);
                if let Some(id) = param(params, "NatGatewayId")
                    && let Some(n) = self.nats.get_mut(id)
                    && n.deleted_at.is_none()
                {
                    n.deleted_at = Some(until);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use std::collections::HashMap;

    #[test]
    fn a_nat_gateway_is_pending_then_available_and_holds_its_subnet_and_address_until_deleted() {
        let mut r = region();
        let t0 = Instant::now();
        let created = r#"<CreateNatGatewayResponse><natGateway><natGatewayAddressSet><item><allocationId>eipalloc-1</allocationId><publicIp>198.51.100.3</publicIp></item></natGatewayAddressSet><natGatewayId>nat-1</natGatewayId><state>available</state><subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId></natGateway></CreateNatGatewayResponse>"#;
        r.record("CreateNatGateway", &[], created, None, &[], t0)
            .unwrap();
        let shown = r
            .rewrite("CreateNatGateway", created, &HashMap::new(), t0)
            .unwrap();
        assert!(shown.contains("<state>pending</state>"), "{shown}");
        let listed = created
            .replace(
                "CreateNatGatewayResponse><natGateway>",
                "DescribeNatGatewaysResponse><natGatewaySet><item>",
            )
            .replace(
                "</natGateway></CreateNatGatewayResponse>",
                "</item></natGatewaySet></DescribeNatGatewaysResponse>",
            )
            .replace(
                "<CreateNatGatewayResponse>",
                "<DescribeNatGatewaysResponse>",
            );
        let at = |r: &Region, t| {
            r.rewrite("DescribeNatGateways", &listed, &HashMap::new(), t)
                .unwrap()
        };
        assert!(at(&r, t0).contains("<state>pending</state>"));
        assert_eq!(
            r.nat_available_in("nat-1", t0),
            Some(scaled(NAT_PENDING_SECS, 1.0))
        );
        let t1 = t0 + scaled(NAT_PENDING_SECS, 1.0);
        assert!(at(&r, t1).contains("<state>available</state>"));
        assert!(r.nat_states(t1).is_empty());

        let refused = |r: &mut Region, action: &str, ps: &[(&str, &str)], t| {
            r.refuse(action, &p(ps), t).map(|x| x.code)
        };
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-1")], t1),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(
                &mut r,
                "ReleaseAddress",
                &[("AllocationId", "eipalloc-1")],
                t1
            ),
            Some("InvalidIPAddress.InUse")
        );
        assert_eq!(
            refused(
                &mut r,
                "ReleaseAddress",
                &[("PublicIp", "198.51.100.3")],
                t1
            ),
            Some("InvalidIPAddress.InUse")
        );
        assert_eq!(
            refused(
                &mut r,
                "DetachInternetGateway",
                &[("VpcId", "vpc-1"), ("InternetGatewayId", "igw-1")],
                t1
            ),
            Some("DependencyViolation")
        );
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-2")], t1),
            None
        );
        assert_eq!(
            refused(&mut r, "DeleteNatGateway", &[("NatGatewayId", "nat-2")], t1),
            Some("NatGatewayNotFound")
        );
        assert_eq!(r.counters.nat_in_use, 5);

        let del = p(&[("NatGatewayId", "nat-1")]);
        assert_eq!(r.refuse("DeleteNatGateway", &del, t1), None);
        r.record(
            "DeleteNatGateway",
            &del,
            "<DeleteNatGatewayResponse/>",
            None,
            &[],
            t1,
        )
        .unwrap();
        let deleted = listed.replace("<state>available</state>", "<state>deleted</state>");
        let shown = r
            .rewrite("DescribeNatGateways", &deleted, &HashMap::new(), t1)
            .unwrap();
        assert!(shown.contains("<state>deleting</state>"), "{shown}");
        assert_eq!(
            refused(
                &mut r,
                "ReleaseAddress",
                &[("AllocationId", "eipalloc-1")],
                t1
            ),
            Some("InvalidIPAddress.InUse"),
            "still deleting"
        );
        let t2 = t1 + scaled(NAT_DELETING_SECS, 1.0);
        assert_eq!(
            r.rewrite("DescribeNatGateways", &deleted, &HashMap::new(), t2)
                .unwrap(),
            deleted
        );
        assert_eq!(
            refused(
                &mut r,
                "ReleaseAddress",
                &[("AllocationId", "eipalloc-1")],
                t2
            ),
            None
        );
        assert_eq!(
            refused(&mut r, "DeleteSubnet", &[("SubnetId", "subnet-1")], t2),
            None
        );
    }
}
