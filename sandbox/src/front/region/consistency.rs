//! Eventual consistency: for a window after a create (with probability `consistency_rate`),
//! a request that names the new resource is answered its kind's `*.NotFound` and Describe
//! lists leave it out. Here are the kinds of resource the window hides ([`Kind`]), what a
//! create's answer made and which request parameters name a hidden resource.

use super::{CONSISTENCY_SECS, Refusal, Region};
use crate::xml;
use anyhow::Result;
use std::time::Instant;

/// The kinds of resource the consistency window hides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Instance,
    Vpc,
    Subnet,
    SecurityGroup,
    InternetGateway,
    RouteTable,
    KeyPair,
    Volume,
    Snapshot,
}

impl Kind {
    fn not_found(self) -> &'static str {
        match self {
            Kind::Instance => "InvalidInstanceID.NotFound",
            Kind::Vpc => "InvalidVpcID.NotFound",
            Kind::Subnet => "InvalidSubnetID.NotFound",
            Kind::SecurityGroup => "InvalidGroup.NotFound",
            Kind::InternetGateway => "InvalidInternetGatewayID.NotFound",
            Kind::RouteTable => "InvalidRouteTableID.NotFound",
            Kind::KeyPair => "InvalidKeyPair.NotFound",
            Kind::Volume => "InvalidVolume.NotFound",
            Kind::Snapshot => "InvalidSnapshot.NotFound",
        }
    }

    /// AWS's message for the NotFound code.
    fn message(self, id: &str) -> String {
        match self {
            Kind::Instance => format!("The instance ID '{id}' does not exist"),
            Kind::Vpc => format!("The vpc ID '{id}' does not exist"),
            Kind::Subnet => format!("The subnet ID '{id}' does not exist"),
            Kind::SecurityGroup => format!("The security group '{id}' does not exist"),
            Kind::InternetGateway => format!("The internetGateway ID '{id}' does not exist"),
            Kind::RouteTable => format!("The routeTable ID '{id}' does not exist"),
            Kind::KeyPair => format!("The key pair '{id}' does not exist"),
            Kind::Volume => format!("The volume '{id}' does not exist."),
            Kind::Snapshot => format!("The snapshot '{id}' does not exist."),
        }
    }

    /// The Describe action, its list and the elements of an item that hold its id.
    fn list(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Kind::Instance => ("DescribeInstances", "instancesSet", &["instanceId"]),
            Kind::Vpc => ("DescribeVpcs", "vpcSet", &["vpcId"]),
            Kind::Subnet => ("DescribeSubnets", "subnetSet", &["subnetId"]),
            Kind::SecurityGroup => ("DescribeSecurityGroups", "securityGroupInfo", &["groupId"]),
            Kind::InternetGateway => (
                "DescribeInternetGateways",
                "internetGatewaySet",
                &["internetGatewayId"],
            ),
            Kind::RouteTable => ("DescribeRouteTables", "routeTableSet", &["routeTableId"]),
            Kind::KeyPair => ("DescribeKeyPairs", "keySet", &["keyName", "keyPairId"]),
            Kind::Volume => ("DescribeVolumes", "volumeSet", &["volumeId"]),
            Kind::Snapshot => ("DescribeSnapshots", "snapshotSet", &["snapshotId"]),
        }
    }
}

/// The resources a create's answer made, with the elements that name them.
fn created(action: &str, body: &str) -> Result<Vec<(Kind, String)>> {
    let one = |kind, element| -> Result<Vec<(Kind, String)>> {
        Ok(xml::first_text(body, element)?
            .map(|id| vec![(kind, id)])
            .unwrap_or_default())
    };
    Ok(match action {
        "RunInstances" => xml::instances(body)?
            .into_iter()
            .map(|i| (Kind::Instance, i.instance_id))
            .collect(),
        "CreateVpc" => one(Kind::Vpc, "vpcId")?,
        "CreateSubnet" => one(Kind::Subnet, "subnetId")?,
        "CreateSecurityGroup" => one(Kind::SecurityGroup, "groupId")?,
        "CreateInternetGateway" => one(Kind::InternetGateway, "internetGatewayId")?,
        "CreateRouteTable" => one(Kind::RouteTable, "routeTableId")?,
        "ImportKeyPair" | "CreateKeyPair" => {
            let mut v = one(Kind::KeyPair, "keyName")?;
            v.extend(one(Kind::KeyPair, "keyPairId")?);
            v
        }
        "CreateVolume" => one(Kind::Volume, "volumeId")?,
        "CreateSnapshot" | "CopySnapshot" => one(Kind::Snapshot, "snapshotId")?,
        _ => Vec::new(),
    })
}

/// Whether a request parameter can name a hidden resource: filters and tags do not (a filter
/// that matches nothing yet is not an error on AWS), and a key pair *name* is only a name in
/// `KeyName` parameters.
fn names(param: &str, value: &str, id: &str, kind: Kind) -> bool {
    if value != id || param.starts_with("Filter.") || param.contains("Tag.") {
        return false;
    }
    let is_key_name = kind == Kind::KeyPair && !id.starts_with("key-");
    !is_key_name || param == "KeyName" || param.starts_with("KeyName.")
}

/// The list and id elements of a Describe action whose items only the window hides (the
/// kinds with states of their own rewrite their lists themselves).
pub(super) fn hidden_list(action: &str) -> Option<(&'static str, &'static [&'static str])> {
    [
        Kind::Vpc,
        Kind::Subnet,
        Kind::SecurityGroup,
        Kind::InternetGateway,
        Kind::RouteTable,
        Kind::KeyPair,
    ]
    .into_iter()
    .map(Kind::list)
    .find(|(describe, _, _)| *describe == action)
    .map(|(_, set, elements)| (set, elements))
}

impl Region {
    pub(super) fn is_hidden(&self, id: &str, now: Instant) -> bool {
        self.hidden.get(id).is_some_and(|(_, until)| now < *until)
    }

    /// What a create's answer made is hidden for the window (each with probability
    /// `consistency_rate`).
    pub(super) fn hide_created(&mut self, action: &str, body: &str, now: Instant) -> Result<()> {
        let window = self.window(CONSISTENCY_SECS);
        for (kind, id) in created(action, body)? {
            if !window.is_zero() && self.chance(self.settings.consistency_rate) {
                self.hidden.insert(id, (kind, now + window));
            }
        }
        Ok(())
    }

    /// A request naming a resource inside its consistency window. A key pair's create names
    /// the key pair itself: EC2 answers it with `InvalidKeyPair.Duplicate` (moto does).
    pub(super) fn not_found(&self, action: &str, params: &[(String, String)]) -> Option<Refusal> {
        if matches!(action, "ImportKeyPair" | "CreateKeyPair") {
            return None;
        }
        self.hidden.iter().find_map(|(id, (kind, _))| {
            params
                .iter()
                .any(|(k, v)| names(k, v, id, *kind))
                .then(|| Refusal {
                    code: kind.not_found(),
                    message: kind.message(id),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use std::collections::HashMap;

    const VPC: &str = r#"<CreateVpcResponse><vpc><vpcId>vpc-1</vpcId><state>available</state></vpc></CreateVpcResponse>"#;
    const VPCS: &str = r#"<DescribeVpcsResponse><vpcSet><item><vpcId>vpc-0</vpcId></item><item><vpcId>vpc-1</vpcId></item></vpcSet></DescribeVpcsResponse>"#;

    #[test]
    fn a_new_vpc_is_not_found_for_the_window_then_found() {
        let mut r = region();
        let t0 = Instant::now();
        r.record("CreateVpc", &[], VPC, None, &[], t0).unwrap();
        let ask = p(&[("Action", "CreateSubnet"), ("VpcId", "vpc-1")]);
        let refusal = r.refuse("CreateSubnet", &ask, t0).unwrap();
        assert_eq!(refusal.code, "InvalidVpcID.NotFound");
        assert_eq!(refusal.message, "The vpc ID 'vpc-1' does not exist");
        let listed = r
            .rewrite("DescribeVpcs", VPCS, &HashMap::new(), t0)
            .unwrap();
        assert!(
            !listed.contains("vpc-1") && listed.contains("vpc-0"),
            "{listed}"
        );
        // A filter naming it is no error; the create's own answer is left alone.
        let filtered = p(&[("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", "vpc-1")]);
        assert_eq!(r.refuse("DescribeVpcs", &filtered, t0), None);
        assert_eq!(
            r.rewrite("CreateVpc", VPC, &HashMap::new(), t0).unwrap(),
            VPC
        );

        let later = t0 + scaled(CONSISTENCY_SECS, 1.0);
        assert_eq!(r.refuse("CreateSubnet", &ask, later), None);
        assert_eq!(
            r.rewrite("DescribeVpcs", VPCS, &HashMap::new(), later)
                .unwrap(),
            VPCS
        );
        assert_eq!(r.counters.not_found, 1);
    }

    #[test]
    fn key_names_are_hidden_only_as_key_names() {
        let mut r = region();
        let t0 = Instant::now();
        let body = "<ImportKeyPairResponse><keyName>op</keyName><keyPairId>key-1</keyPairId></ImportKeyPairResponse>";
        r.record("ImportKeyPair", &[], body, None, &[], t0).unwrap();
        let run = p(&[("KeyName", "op"), ("ImageId", "ami-1")]);
        assert_eq!(
            r.refuse("RunInstances", &run, t0).unwrap().code,
            "InvalidKeyPair.NotFound"
        );
        let tagged = p(&[
            ("TagSpecification.1.Tag.1.Value", "op"),
            ("Description", "op"),
        ]);
        assert_eq!(r.refuse("CreateVolume", &tagged, t0), None);
        let by_id = p(&[("KeyPairId.1", "key-1")]);
        assert!(r.refuse("DescribeKeyPairs", &by_id, t0).is_some());
        // Importing it again (a rerun) is moto's to answer: InvalidKeyPair.Duplicate.
        let again = p(&[("KeyName", "op"), ("PublicKeyMaterial", "c3No")]);
        assert_eq!(r.refuse("ImportKeyPair", &again, t0), None);
    }

    #[test]
    fn rate_zero_hides_nothing_and_speed_zero_is_instant() {
        let t0 = Instant::now();
        let mut r = Region::new(
            RegionSettings {
                consistency_rate: 0.0,
                ..RegionSettings::default()
            },
            7,
        );
        r.record("CreateVpc", &[], VPC, None, &[], t0).unwrap();
        assert_eq!(r.refuse("X", &p(&[("VpcId", "vpc-1")]), t0), None);
        let mut r = Region::new(
            RegionSettings {
                speed: 0.0,
                ..RegionSettings::default()
            },
            7,
        );
        r.record("CreateVpc", &[], VPC, None, &[], t0).unwrap();
        r.record("RunInstances", &[], RUN, None, &[], t0).unwrap();
        assert_eq!(r.refuse("X", &p(&[("VpcId", "vpc-1")]), t0), None);
        assert_eq!(describe_shows(&r, t0)[0].state, "running");
    }
}
