//! Observation: one Describe call per resource kind (paginated, filtered by the cluster tag),
//! all at once — the number of calls does not grow with the number of nodes. Lists are sorted
//! by id so that the same world always gives the same `Observed` (and fingerprint).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Tag};

use super::{Aws, AwsError, api_err, filter, filter_any};
use crate::observed::{self, Observed, Tags, tags};
use crate::spec::{Ami, CANONICAL_OWNER, Spec, UBUNTU_2404_NAME_FILTER};

/// What one observation reads: the cluster's resources (by its tag), or everything in one VPC
/// (`redisctl adopt`: resources built without redisctl, which carry no redisctl tag).
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Cluster(&'a str),
    Vpc(&'a str),
}

/// The resource kinds read by tag or by VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vpcs,
    Subnets,
    InternetGateways,
    RouteTables,
    NatGateways,
    Addresses,
    SecurityGroups,
    Instances,
    Volumes,
    Snapshots,
}

impl Scope<'_> {
    /// The filters of one Describe call; `None` for a kind this scope does not read that way
    /// (a VPC's Elastic IPs and snapshots are not found by VPC; its volumes are read by the
    /// instances they are attached to).
    fn filters(&self, kind: Kind) -> Option<Vec<Filter>> {
        match self {
            Scope::Cluster(name) => Some(vec![filter(&format!("tag:{}", tags::CLUSTER), name)]),
            Scope::Vpc(id) => {
                let key = match kind {
                    Kind::InternetGateways => "attachment.vpc-id",
                    Kind::Addresses | Kind::Volumes | Kind::Snapshots => return None,
                    _ => "vpc-id",
                };
                Some(vec![filter(key, id)])
            }
        }
    }

    fn name(&self) -> &str {
        match self {
            Scope::Cluster(n) | Scope::Vpc(n) => n,
        }
    }
}

/// An instance's EBS block devices: device name -> volume id.
pub(crate) fn block_devices(i: &aws_sdk_ec2::types::Instance) -> BTreeMap<String, String> {
    i.block_device_mappings()
        .iter()
        .filter_map(|m| {
            Some((
                m.device_name()?.to_string(),
                m.ebs()?.volume_id()?.to_string(),
            ))
        })
        .collect()
}

pub(crate) fn tag_map(t: &[Tag]) -> Tags {
    t.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect()
}

pub(crate) fn volume(v: &aws_sdk_ec2::types::Volume) -> observed::Volume {
    observed::Volume {
        id: s(v.volume_id()),
        size_gib: v.size().unwrap_or(0),
        volume_type: v
            .volume_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        encrypted: v.encrypted().unwrap_or(false),
        kms_key_id: v.kms_key_id().map(String::from),
        az: s(v.availability_zone()),
        state: v
            .state()
            .map(|x| x.as_str().to_string())
            .unwrap_or_default(),
        snapshot_id: v.snapshot_id().filter(|x| !x.is_empty()).map(String::from),
        attachment: v
            .attachments()
            .iter()
            .find_map(|a| Some((a.instance_id()?.to_string(), a.device()?.to_string()))),
        tags: tag_map(v.tags()),
    }
}

pub(crate) fn snapshot(x: &aws_sdk_ec2::types::Snapshot) -> observed::Snapshot {
    observed::Snapshot {
        id: s(x.snapshot_id()),
        volume_id: x.volume_id().map(String::from),
        state: x
            .state()
            .map(|st| st.as_str().to_string())
            .unwrap_or_default(),
        encrypted: x.encrypted().unwrap_or(false),
        tags: tag_map(x.tags()),
    }
}

/// The ids the node instances' swap tags name that the tag-filtered calls did not return,
/// looked up one by one (only while a swap is in flight, at most three per node): the
/// planner must see a volume or snapshot that is not the cluster's to refuse it by name.
async fn swap_named(
    aws: &Aws,
    instances: &[observed::Instance],
    volumes: &[observed::Volume],
    snapshots: &[observed::Snapshot],
) -> Result<observed::SwapNamed, AwsError> {
    let mut out = observed::SwapNamed::default();
    let (vol_ids, snap_ids) = unobserved_swap_ids(instances, volumes, snapshots);
    for id in vol_ids {
        match aws.volume_by_id(id).await {
            Ok(Some(v)) => out.volumes.push(v),
            Ok(None) => out.gone.push(id.to_string()),
            // Not an id EC2 can look up: left unobserved, which the planner refuses.
            Err(AwsError::Api { code, .. }) if malformed(&code) => {}
            Err(e) => return Err(e),
        }
    }
    for id in snap_ids {
        match aws.snapshot_by_id(id).await {
            Ok(Some(x)) => out.snapshots.push(x),
            Ok(None) => out.gone.push(id.to_string()),
            Err(AwsError::Api { code, .. }) if malformed(&code) => {}
            Err(e) => return Err(e),
        }
    }
    out.gone.sort();
    Ok(out)
}

/// The volume and snapshot ids the instances' swap tags name that the tag-filtered lists do
/// not hold, sorted, once each.
fn unobserved_swap_ids<'a>(
    instances: &'a [observed::Instance],
    volumes: &[observed::Volume],
    snapshots: &[observed::Snapshot],
) -> (Vec<&'a str>, Vec<&'a str>) {
    let named = |keys: &[&str]| -> Vec<&'a str> {
        let mut ids: Vec<&'a str> = instances
            .iter()
            .flat_map(|i| {
                keys.iter()
                    .filter_map(|k| i.tags.get(*k).map(String::as_str))
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let mut vols = named(&[tags::SWAP_OLD_VOLUME, tags::SWAP_NEW_VOLUME]);
    vols.retain(|id| !volumes.iter().any(|v| v.id == *id));
    let mut snaps = named(&[tags::SWAP_SNAPSHOT]);
    snaps.retain(|id| !snapshots.iter().any(|x| x.id == *id));
    (vols, snaps)
}

fn malformed(code: &str) -> bool {
    code.ends_with(".Malformed") || code == "InvalidParameterValue"
}

fn s(o: Option<&str>) -> String {
    o.unwrap_or("").to_string()
}

impl Aws {
    /// The ids of the VPCs `vpc` names: its own id (`vpc-…`), or its Name tag.
    pub async fn vpc_ids(&self, vpc: &str) -> Result<Vec<String>, AwsError> {
        let req = self.client.describe_vpcs();
        let req = if vpc.starts_with("vpc-") {
            req.filters(filter("vpc-id", vpc))
        } else {
            req.filters(filter("tag:Name", vpc))
        };
        let out = req
            .send()
            .await
            .map_err(|e| api_err("DescribeVpcs", vpc, e))?;
        let mut ids: Vec<String> = out
            .vpcs()
            .iter()
            .filter_map(|v| v.vpc_id().map(String::from))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// The volumes `filters` select, sorted by id.
async fn volumes_where(
    c: &aws_sdk_ec2::Client,
    name: &str,
    filters: Vec<Filter>,
) -> Result<Vec<observed::Volume>, AwsError> {
    let mut out: Vec<observed::Volume> = c
        .describe_volumes()
        .set_filters(Some(filters))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| api_err("DescribeVolumes", name, e))?
        .into_iter()
        .map(|v| volume(&v))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Read everything redisctl owns for the cluster in `spec`, plus the AMI candidates.
pub async fn observe(aws: &Aws, spec: &Spec) -> Result<Observed, AwsError> {
    observe_scope(aws, spec, Scope::Cluster(&spec.cluster.name)).await
}

/// Read what `scope` holds (the same calls as [`observe`], each filtered by the scope), plus
/// the key pair and AMI candidates of the spec.
pub async fn observe_scope(aws: &Aws, spec: &Spec, scope: Scope<'_>) -> Result<Observed, AwsError> {
    let c = &aws.client;
    let name = scope.name();
    let vpcs = async {
        let mut out: Vec<observed::Vpc> = c
            .describe_vpcs()
            .set_filters(scope.filters(Kind::Vpcs))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_err("DescribeVpcs", name, e))?
            .into_iter()
            .map(|v| observed::Vpc {
                id: s(v.vpc_id()),
                cidr: s(v.cidr_block()),
                state: v
                    .state()
                    .map(|x| x.as_str().to_string())
                    .unwrap_or_default(),
                dns_support: None,
                dns_hostnames: None,
                tags: tag_map(v.tags()),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(out)
    };
    let subnets = async {
        let mut out: Vec<observed::Subnet> = c
            .describe_subnets()
            .set_filters(scope.filters(Kind::Subnets))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_err("DescribeSubnets", name, e))?
            .into_iter()
            .map(|x| observed::Subnet {
                id: s(x.subnet_id()),
                vpc_id: s(x.vpc_id()),
                cidr: s(x.cidr_block()),
                az: s(x.availability_zone()),
                map_public_ip_on_launch: x.map_public_ip_on_launch().unwrap_or(false),
                tags: tag_map(x.tags()),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(out)
    };
    let igws = async {
        let mut out: Vec<observed::InternetGateway> = c
            .describe_internet_gateways()
            .set_filters(scope.filters(Kind::InternetGateways))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_err("DescribeInternetGateways", name, e))?
            .into_iter()
            .map(|g| observed::InternetGateway {
                id: s(g.internet_gateway_id()),
                attached_to: g
                    .attachments()
                    .iter()
                    .filter(|a| a.state().is_some_and(|st| st.as_str() != "detached"))
                    .filter_map(|a| a.vpc_id().map(String::from))
                    .collect(),
                tags: tag_map(g.tags()),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(out)
    };
    let rts = async {
        let mut out: Vec<observed::RouteTable> = c
            .describe_route_tables()
            .set_filters(scope.filters(Kind::RouteTables))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_err("DescribeRouteTables", name, e))?
            .into_iter()
            .map(|r| {
                let mut routes: Vec<observed::Route> = r
                    .routes()
                    .iter()
                    .filter_map(|x| {
                        let dest = x.destination_cidr_block()?;
                        let target = x
                            .gateway_id()
                            .or(x.nat_gateway_id())
                            .or(x.network_interface_id())
                            .or(x.instance_id())
                            .or(x.transit_gateway_id())
                            .or(x.vpc_peering_connection_id())
                            .unwrap_or("?");
                        Some(observed::Route {
                            destination: dest.to_string(),
                            target: target.to_string(),
                        })
                    })
                    .collect();
                routes.sort_by(|a, b| a.destination.cmp(&b.destination));
                let mut associations: Vec<observed::RouteTableAssociation> = r
                    .associations()
                    .iter()
                    .map(|a| observed::RouteTableAssociation {
                        id: s(a.route_table_association_id()),
                        subnet_id: a.subnet_id().map(String::from),
                        main: a.main().unwrap_or(false),
                    })
                    .collect();
                associations.sort_by(|a, b| a.id.cmp(&b.id));
                observed::RouteTable {
                    id: s(r.route_table_id()),
                    vpc_id: s(r.vpc_id()),
                    routes,
                    associations,
                    tags: tag_map(r.tags()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(out)
    };
    let nat_gateways = async {
        let mut out: Vec<observed::NatGateway> = c
            .describe_nat_gateways()
            .set_filter(scope.filters(Kind::NatGateways))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_err("DescribeNatGateways", name, e))?
            .into_iter()
            .filter(|g| g.state().is_some_and(|st| st.as_str() != "deleted"))
            .map(|g| observed::NatGateway {
                id: s(g.nat_gateway_id()),
                subnet_id: s(g.subnet_id()),
                vpc_id: s(g.vpc_id()),
                state: g
                    .state()
                    .map(|x| x.as_str().to_string())
                    .unwrap_or_default(),
                allocation_ids: g
                    .nat_gateway_addresses()
                    .iter()
                    .filter_map(|a| a.allocation_id().map(String::from))
                    .collect(),
                tags: tag_map(g.tags()),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(out)
    };
    let addresses = async {
        let Some(filters) = scope.filters(Kind::Addresses) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<observed::Address> = c
            .describe_addresses()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|e| api_err("DescribeAddresses", name, e))?
            .addresses()
            .iter()
            .map(|a| observed::Address {
                allocation_id: s(a.allocation_id()),
                public_ip: s(a.public_ip()),
                association_id: a.association_id().map(String::from),
                tags: tag_map(a.tags()),
            })
            .collect();
        out.sort_by(|a, b| a.allocation_id.cmp(&b.allocation_id));
        Ok::<_, AwsError>(out)
    };
    let sgs = async {
        let mut out: Vec<observed::SecurityGroup> = c
            .describe_security_groups()
            .set_filters(scope.filters(Kind::SecurityGroups))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_err("DescribeSecurityGroups", name, e))?
            .into_iter()
            .map(|g| {
                let own = g.group_id().unwrap_or_default();
                let mut ingress = Vec::new();
                for p in g.ip_permissions() {
                    let protocol = s(p.ip_protocol());
                    let (from, to) = (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
                    let sources = p
                        .ip_ranges()
                        .iter()
                        .filter_map(|r| r.cidr_ip().map(String::from))
                        .chain(
                            p.ipv6_ranges()
                                .iter()
                                .filter_map(|r| r.cidr_ipv6().map(String::from)),
                        )
                        .chain(p.user_id_group_pairs().iter().filter_map(|r| {
                            r.group_id().map(|id| match id == own {
                                true => observed::SELF_SOURCE.to_string(),
                                false => id.to_string(),
                            })
                        }))
                        .chain(
                            p.prefix_list_ids()
                                .iter()
                                .filter_map(|r| r.prefix_list_id().map(String::from)),
                        );
                    for source in sources {
                        ingress.push(observed::IngressRule {
                            protocol: protocol.clone(),
                            from_port: from,
                            to_port: to,
                            source,
                        });
                    }
                }
                ingress.sort();
                observed::SecurityGroup {
                    id: s(g.group_id()),
                    name: s(g.group_name()),
                    vpc_id: s(g.vpc_id()),
                    ingress,
                    tags: tag_map(g.tags()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(out)
    };
    let key_pairs = async {
        let out = c
            .describe_key_pairs()
            .filters(filter("key-name", &spec.ssh.key_name))
            .include_public_key(true)
            .send()
            .await
            .map_err(|e| api_err("DescribeKeyPairs", &spec.ssh.key_name, e))?;
        let mut list: Vec<observed::KeyPair> = out
            .key_pairs()
            .iter()
            .map(|k| observed::KeyPair {
                id: s(k.key_pair_id()),
                name: s(k.key_name()),
                public_key: k.public_key().map(|p| p.trim().to_string()),
                tags: tag_map(k.tags()),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(list)
    };
    let instances = async {
        let reservations: Vec<_> = c
            .describe_instances()
            .set_filters(scope.filters(Kind::Instances))
            .filters(filter_any(
                "instance-state-name",
                &["pending", "running", "stopping", "stopped", "shutting-down"],
            ))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_err("DescribeInstances", name, e))?;
        let mut out: Vec<observed::Instance> = reservations
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| observed::Instance {
                id: s(i.instance_id()),
                state: i
                    .state()
                    .and_then(|st| st.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                instance_type: i
                    .instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                image_id: s(i.image_id()),
                subnet_id: i.subnet_id().map(String::from),
                private_ip: i.private_ip_address().and_then(|a| a.parse().ok()),
                public_ip: i.public_ip_address().and_then(|a| a.parse().ok()),
                key_name: i.key_name().map(String::from),
                security_group_ids: i
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(String::from))
                    .collect(),
                root_device_name: i.root_device_name().map(String::from),
                block_devices: block_devices(i),
                launch_time: i.launch_time().map(|t| t.to_string()),
                http_tokens: i
                    .metadata_options()
                    .and_then(|m| m.http_tokens())
                    .map(|t| t.as_str().to_string()),
                instance_profile: i
                    .iam_instance_profile()
                    .and_then(|p| p.arn())
                    .map(String::from),
                tags: tag_map(i.tags()),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(out)
    };
    let volumes = async {
        match scope.filters(Kind::Volumes) {
            Some(filters) => volumes_where(c, name, filters).await,
            None => Ok(Vec::new()),
        }
    };
    let snapshots = async {
        let Some(filters) = scope.filters(Kind::Snapshots) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<observed::Snapshot> = c
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| api_err("DescribeSnapshots", name, e))?
            .into_iter()
            .map(|x| snapshot(&x))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(out)
    };
    let images = async {
        let req = c.describe_images();
        let req = match &spec.nodes.ami {
            Ami::Ubuntu2404 => req
                .owners(CANONICAL_OWNER)
                .filters(filter("name", UBUNTU_2404_NAME_FILTER))
                .filters(filter("state", "available"))
                .filters(filter("architecture", "x86_64")),
            Ami::Id(id) => req.image_ids(id),
        };
        let out = match req.send().await {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .and_then(|x| aws_sdk_ec2::error::ProvideErrorMetadata::code(x))
                    .is_some_and(|c| c.starts_with("InvalidAMIID")) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(api_err("DescribeImages", &spec.nodes.ami.to_string(), e)),
        };
        let mut list: Vec<observed::Image> = out
            .images()
            .iter()
            .map(|i| observed::Image {
                id: s(i.image_id()),
                name: s(i.name()),
                creation_date: s(i.creation_date()),
                root_device_name: s(i.root_device_name()),
                architecture: i
                    .architecture()
                    .map(|a| a.as_str().to_string())
                    .unwrap_or_default(),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok::<_, AwsError>(list)
    };
    let (
        vpcs,
        subnets,
        internet_gateways,
        route_tables,
        security_groups,
        nat_gateways,
        addresses,
        key_pairs,
        instances,
        volumes,
        snapshots,
        images,
    ) = tokio::try_join!(
        vpcs,
        subnets,
        igws,
        rts,
        sgs,
        nat_gateways,
        addresses,
        key_pairs,
        instances,
        volumes,
        snapshots,
        images
    )?;
    // A VPC's volumes: those attached to its instances.
    let volumes = match scope {
        Scope::Vpc(_) if !instances.is_empty() => {
            let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
            volumes_where(c, name, vec![filter_any("attachment.instance-id", &ids)]).await?
        }
        _ => volumes,
    };
    let swap_named = swap_named(aws, &instances, &volumes, &snapshots).await?;
    Ok(Observed {
        swap_named,
        vpcs,
        subnets,
        internet_gateways,
        route_tables,
        security_groups,
        nat_gateways,
        addresses,
        key_pairs,
        instances,
        volumes,
        snapshots,
        images,
        ..Observed::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(t: &[(&str, &str)]) -> observed::Instance {
        observed::Instance {
            tags: t
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..observed::Instance::bare("i-1", "running")
        }
    }

    #[test]
    fn what_swap_tags_name_outside_the_tag_filter_is_looked_up() {
        let a = instance(&[
            (tags::SWAP_OLD_VOLUME, "vol-foreign"),
            (tags::SWAP_SNAPSHOT, "snap-foreign"),
            (tags::SWAP_NEW_VOLUME, "vol-tagged"),
        ]);
        let b = instance(&[(tags::SWAP_OLD_VOLUME, "vol-foreign")]);
        let tagged = observed::Volume {
            id: "vol-tagged".into(),
            size_gib: 8,
            volume_type: "gp3".into(),
            encrypted: true,
            kms_key_id: None,
            az: "az".into(),
            state: "in-use".into(),
            snapshot_id: None,
            attachment: None,
            tags: Tags::new(),
        };
        let instances = [a, b];
        let (vols, snaps) = unobserved_swap_ids(&instances, &[tagged], &[]);
        assert_eq!(vols, ["vol-foreign"]);
        assert_eq!(snaps, ["snap-foreign"]);
        let none = [instance(&[])];
        let (vols, snaps) = unobserved_swap_ids(&none, &[], &[]);
        assert!(vols.is_empty() && snaps.is_empty());
    }
}
