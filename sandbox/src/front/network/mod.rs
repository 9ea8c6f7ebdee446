//! The VPC's network as EC2 enforces it: public IPs that lead somewhere (and change at every
//! start), the internet gateway's translation, and security groups that are enforced.
//!
//! Everything is decided here from what moto holds ([`View`], read after each action that can
//! change it) and carried out as one nftables table in the operator namespace, replaced
//! atomically ([`operator_rules`]). The rules sit outside the hosts, as a security group sits
//! outside an instance: nothing a guest's root does to its own firewall changes them. The
//! bridge passes every IPv4 packet between hosts through the operator namespace's `forward`
//! hook (`br_netfilter`), so one place sees host ↔ host (same subnet or not), operator → host
//! and host → operator traffic, with connection tracking (security groups are stateful).
//!
//! - **Public IPs**: an instance moto gave a public address gets one of the front's from
//!   [`PUBLIC_RANGE`] each time its host boots, and loses it when the host stops; the answers
//!   show the front's address (`xml::rewrite_boots`).
//! - **The internet gateway**: a public IP leads to its instance (DNAT) only when the instance's
//!   subnet routes `0.0.0.0/0` to an internet gateway attached to its VPC; otherwise packets to
//!   it are dropped (a connection times out, as on AWS).
//! - **The operator** plays the internet: what it sends into the VPC leaves from
//!   [`OPERATOR_ADDR`] (in the reference spec's `ssh_cidrs`), whether to a public IP or, as over
//!   a VPN, to a private one.
//! - **Security groups**: a new connection to an instance must be allowed by an ingress rule of
//!   one of its groups, and one from it by an egress rule (CIDR sources, or groups: the private
//!   IPs of the instances in that group); replies pass. Default deny.
//! - **Egress to the internet** (the only service there is the apt archive, [`ARCHIVE_ADDR`]): a
//!   host whose subnet routes `0.0.0.0/0` to an attached internet gateway goes out from its
//!   public IP (none: dropped); one whose subnet routes it to an `available` NAT gateway (in a
//!   subnet with such a gateway route, with an Elastic IP) goes out from the NAT gateway's
//!   address; anything else is dropped (a timeout). Source NAT in the operator namespace
//!   ([`View::internet_source`]), after the host's egress rules.
//!
//! The model and its routes are in `view` (read from moto by `parse`), the table in `rules`,
//! the addresses handed out in `public_ips`; here is what the front holds ([`Network`]) and
//! when it decides again ([`ACTIONS`]).

#[cfg(test)]
mod fixtures;
mod parse;
mod public_ips;
mod rules;
mod view;

use crate::xml;
use anyhow::Result;
use public_ips::PublicIps;
use rules::{Host, operator_rules};
use std::collections::HashMap;
use view::View;

pub use crate::net::{ARCHIVE_ADDR, OPERATOR_ADDR, PUBLIC_RANGE};

/// The actions after which the network is decided again (they change instances, addresses,
/// routes, gateways or security groups), at once.
pub const ACTIONS: &[&str] = &[
    "RunInstances",
    "StartInstances",
    "StopInstances",
    "RebootInstances",
    "TerminateInstances",
    "AuthorizeSecurityGroupIngress",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
    "ModifySecurityGroupRules",
    "DeleteSecurityGroup",
    "ModifyInstanceAttribute",
    "ModifyNetworkInterfaceAttribute",
    "CreateRoute",
    "ReplaceRoute",
    "DeleteRoute",
    "DeleteRouteTable",
    "AssociateRouteTable",
    "DisassociateRouteTable",
    "ReplaceRouteTableAssociation",
    "AttachInternetGateway",
    "DetachInternetGateway",
    // (CreateNatGateway: when the gateway becomes `available`, at the end of its `pending`
    // window; the proxy schedules it.)
    "DeleteNatGateway",
    "AllocateAddress",
    "ReleaseAddress",
    "AssociateAddress",
    "DisassociateAddress",
];

/// The network's state in the front: the public IPs handed out and the table last applied.
#[derive(Default)]
pub struct Network {
    pub ips: std::sync::Mutex<PublicIps>,
    applied: tokio::sync::Mutex<String>,
}

impl Network {
    /// Reads what moto holds, settles the public IPs of the `running` instances and applies
    /// the operator namespace's table when it changed. `nat_states`: the NAT gateways whose
    /// state the timed region shows otherwise than moto (`pending`, `deleting`). Called under
    /// the front's machine lock.
    pub async fn reconcile(
        &self,
        moto: &crate::front::moto::Moto,
        auth: &crate::front::moto::Auth,
        running: &[String],
        nat_states: &HashMap<String, &'static str>,
    ) -> Result<()> {
        // Every instance that is not terminated, page after page: moto answers at most 100
        // reservations at a time, and keeps terminated instances; a view built from the first
        // page missed the instances launched after a hundred others (the chaos campaign's cycle
        // 23: two of three new nodes got no public IP and no network rules).
        let mut instances = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params: Vec<(&str, &str)> = vec![
                ("Action", "DescribeInstances"),
                ("Filter.1.Name", "instance-state-name"),
                ("Filter.1.Value.1", "pending"),
                ("Filter.1.Value.2", "running"),
                ("Filter.1.Value.3", "shutting-down"),
                ("Filter.1.Value.4", "stopping"),
                ("Filter.1.Value.5", "stopped"),
            ];
            if let Some(t) = &token {
                params.push(("NextToken", t));
            }
            let page = moto.ec2(auth, &params).await?;
            instances.extend(parse::instances_of(&page)?);
            token = crate::xml::first_text(&page, "nextToken")?.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        let mut answers = vec![String::new()];
        for action in [
            "DescribeSubnets",
            "DescribeRouteTables",
            "DescribeInternetGateways",
            "DescribeSecurityGroups",
            "DescribeNatGateways",
            "DescribeAddresses",
        ] {
            answers.push(moto.ec2(auth, &[("Action", action)]).await?);
        }
        let mut view = View::parse(
            "<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>",
            &answers[1],
            &answers[2],
            &answers[3],
            &answers[4],
            &answers[5],
            &answers[6],
        )?;
        view.instances = instances;
        for (id, state) in nat_states {
            if let Some(n) = view.nat_gateways.get_mut(id) {
                n.state = state.to_string();
            }
        }
        let hosts: Vec<Host> = {
            let mut ips = self.ips.lock().unwrap();
            for change in ips.settle(&view, running) {
                crate::logging::log(&change);
            }
            running
                .iter()
                .filter_map(|id| {
                    Some(Host {
                        id: id.clone(),
                        private_ip: view.instance(id)?.private_ip?,
                        public_ip: ips.held.get(id).copied(),
                    })
                })
                .collect()
        };
        self.apply(operator_rules(&view, &hosts, crate::BRIDGE))
            .await
    }

    /// A new VPC's default security group as AWS makes it: besides moto's egress to anywhere,
    /// all traffic in from the group's own members (moto leaves that rule out).
    pub async fn default_group_rule(
        &self,
        moto: &crate::front::moto::Moto,
        auth: &crate::front::moto::Auth,
        create_vpc_answer: &str,
    ) -> Result<()> {
        let vpc = xml::first_text(create_vpc_answer, "vpcId")?
            .ok_or_else(|| anyhow::anyhow!("moto's CreateVpc answer has no vpcId"))?;
        let groups = moto
            .ec2(
                auth,
                &[
                    ("Action", "DescribeSecurityGroups"),
                    ("Filter.1.Name", "vpc-id"),
                    ("Filter.1.Value.1", &vpc),
                    ("Filter.2.Name", "group-name"),
                    ("Filter.2.Value.1", "default"),
                ],
            )
            .await?;
        let group = xml::first_text(&groups, "groupId")?
            .ok_or_else(|| anyhow::anyhow!("moto made no default security group for {vpc}"))?;
        moto.ec2(
            auth,
            &[
                ("Action", "AuthorizeSecurityGroupIngress"),
                ("GroupId", &group),
                ("IpPermissions.1.IpProtocol", "-1"),
                ("IpPermissions.1.Groups.1.GroupId", &group),
            ],
        )
        .await?;
        Ok(())
    }

    /// The table with no host: the gateway's source translation, nothing reachable.
    pub async fn clear(&self) -> Result<()> {
        self.ips.lock().unwrap().clear();
        self.apply(operator_rules(&View::default(), &[], crate::BRIDGE))
            .await
    }

    async fn apply(&self, rules: String) -> Result<()> {
        let mut applied = self.applied.lock().await;
        if *applied == rules {
            return Ok(());
        }
        tokio::task::spawn_blocking(crate::net::ensure_public_route).await??;
        let mut child = tokio::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run nft (is nftables installed?): {e}"))?;
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(rules.as_bytes()).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            anyhow::bail!(
                "nft refused the VPC's rules: {}\n{rules}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        *applied = rules;
        Ok(())
    }
}
