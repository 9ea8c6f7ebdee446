//! The executor's EC2 operations (`Ec2Op`, every one matched). Each is an idempotent ensure: it
//! looks for the resource by its identity first and adopts it, so re-running a half-applied plan
//! makes no duplicates. Tags are written at creation (TagSpecifications); the ones written
//! after are state that changes (`SetTags`, the host-key pin, the swap's stage).

use std::collections::BTreeMap;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, AttributeValue, BlockDeviceMapping, EbsBlockDevice, Filter,
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType,
    IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, Tag, UserIdGroupPair, VolumeType,
};

use super::{Aws, AwsError, api_err, filter, tag_spec, wait_for};
use crate::observed::{IngressRule, Tags, tags};
use crate::plan::{Ec2Op, Ref, RunInstance};

fn tag_filters(t: &Tags, keys: &[&str]) -> Vec<Filter> {
    keys.iter()
        .filter_map(|k| t.get(*k).map(|v| filter(&format!("tag:{k}"), v)))
        .collect()
}

fn is_code<E: ProvideErrorMetadata>(e: &E, codes: &[&str]) -> bool {
    e.code().is_some_and(|c| codes.contains(&c))
}

fn permission(rule: &IngressRule, description: Option<&str>) -> IpPermission {
    let b = IpPermission::builder()
        .ip_protocol(&rule.protocol)
        .from_port(rule.from_port)
        .to_port(rule.to_port);
    let src = &rule.source;
    let b = if src.starts_with("sg-") {
        b.user_id_group_pairs(UserIdGroupPair::builder().group_id(src).build())
    } else if src.starts_with("pl-") {
        b.prefix_list_ids(PrefixListId::builder().prefix_list_id(src).build())
    } else if src.contains(':') {
        b.ipv6_ranges(
            Ipv6Range::builder()
                .cidr_ipv6(src)
                .set_description(description.map(String::from))
                .build(),
        )
    } else {
        b.ip_ranges(
            IpRange::builder()
                .cidr_ip(src)
                .set_description(description.map(String::from))
                .build(),
        )
    };
    b.build()
}

impl Aws {
    /// Carry out one operation. `made` maps step addresses to the ids their steps produced.
    /// Returns the id this operation produced or adopted, if any.
    pub async fn run_op(
        &self,
        op: &Ec2Op,
        made: &BTreeMap<String, String>,
    ) -> Result<Option<String>, AwsError> {
        let r = |x: &Ref| -> Result<String, AwsError> {
            match x {
                Ref::Id(id) => Ok(id.clone()),
                Ref::Step(a) => made.get(a).cloned().ok_or_else(|| AwsError::Local {
                    what: format!("internal: {a} has not produced an id"),
                    source: "dependency order".into(),
                }),
            }
        };
        let c = &self.client;
        match op {
            Ec2Op::CreateVpc { cidr, tags } => {
                let mut found = c
                    .describe_vpcs()
                    .set_filters(Some(tag_filters(tags, &[tags::CLUSTER, tags::ROLE])));
                found = found.filters(filter("cidr-block", cidr));
                let out = found
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeVpcs", cidr, e))?;
                let id = match out.vpcs().first().and_then(|v| v.vpc_id()) {
                    Some(id) => id.to_string(),
                    None => c
                        .create_vpc()
                        .cidr_block(cidr)
                        .tag_specifications(tag_spec(ResourceType::Vpc, tags))
                        .send()
                        .await
                        .map_err(|e| api_err("CreateVpc", cidr, e))?
                        .vpc()
                        .and_then(|v| v.vpc_id())
                        .unwrap_or_default()
                        .to_string(),
                };
                let yes = || AttributeBooleanValue::builder().value(true).build();
                c.modify_vpc_attribute()
                    .vpc_id(&id)
                    .enable_dns_support(yes())
                    .send()
                    .await
                    .map_err(|e| api_err("ModifyVpcAttribute", &id, e))?;
                c.modify_vpc_attribute()
                    .vpc_id(&id)
                    .enable_dns_hostnames(yes())
                    .send()
                    .await
                    .map_err(|e| api_err("ModifyVpcAttribute", &id, e))?;
                Ok(Some(id))
            }
            Ec2Op::CreateSubnet {
                vpc,
                cidr,
                az,
                map_public_ip,
                tags,
            } => {
                let vpc = r(vpc)?;
                let out = c
                    .describe_subnets()
                    .filters(filter("vpc-id", &vpc))
                    .filters(filter("cidr-block", cidr))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeSubnets", cidr, e))?;
                let id = match out.subnets().first().and_then(|s| s.subnet_id()) {
                    Some(id) => id.to_string(),
                    None => c
                        .create_subnet()
                        .vpc_id(&vpc)
                        .cidr_block(cidr)
                        .availability_zone(az)
                        .tag_specifications(tag_spec(ResourceType::Subnet, tags))
                        .send()
                        .await
                        .map_err(|e| api_err("CreateSubnet", cidr, e))?
                        .subnet()
                        .and_then(|s| s.subnet_id())
                        .unwrap_or_default()
                        .to_string(),
                };
                self.set_subnet_public_ip(&id, *map_public_ip).await?;
                Ok(Some(id))
            }
            Ec2Op::SetSubnetPublicIp {
                subnet,
                map_public_ip,
            } => {
                self.set_subnet_public_ip(subnet, *map_public_ip).await?;
                Ok(None)
            }
            Ec2Op::CreateInternetGateway { vpc, tags } => {
                let vpc = r(vpc)?;
                let out = c
                    .describe_internet_gateways()
                    .set_filters(Some(tag_filters(tags, &[tags::CLUSTER, tags::ROLE])))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeInternetGateways", "igw", e))?;
                let existing = out.internet_gateways().first();
                let id = match existing.and_then(|g| g.internet_gateway_id()) {
                    Some(id) => id.to_string(),
                    None => c
                        .create_internet_gateway()
                        .tag_specifications(tag_spec(ResourceType::InternetGateway, tags))
                        .send()
                        .await
                        .map_err(|e| api_err("CreateInternetGateway", "igw", e))?
                        .internet_gateway()
                        .and_then(|g| g.internet_gateway_id())
                        .unwrap_or_default()
                        .to_string(),
                };
                let attached = existing.is_some_and(|g| {
                    g.attachments()
                        .iter()
                        .any(|a| a.vpc_id() == Some(vpc.as_str()))
                });
                if !attached {
                    self.attach_igw(&id, &vpc).await?;
                }
                Ok(Some(id))
            }
            Ec2Op::AttachInternetGateway { igw, vpc } => {
                self.attach_igw(igw, &r(vpc)?).await?;
                Ok(None)
            }
            Ec2Op::CreateRouteTable { vpc, igw, tags } => {
                let (vpc, igw) = (r(vpc)?, r(igw)?);
                let out = c
                    .describe_route_tables()
                    .set_filters(Some(tag_filters(tags, &[tags::CLUSTER, tags::ROLE])))
                    .filters(filter("vpc-id", &vpc))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeRouteTables", "route table", e))?;
                let existing = out.route_tables().first();
                let id = match existing.and_then(|t| t.route_table_id()) {
                    Some(id) => id.to_string(),
                    None => c
                        .create_route_table()
                        .vpc_id(&vpc)
                        .tag_specifications(tag_spec(ResourceType::RouteTable, tags))
                        .send()
                        .await
                        .map_err(|e| api_err("CreateRouteTable", &vpc, e))?
                        .route_table()
                        .and_then(|t| t.route_table_id())
                        .unwrap_or_default()
                        .to_string(),
                };
                let route = existing.and_then(|t| {
                    t.routes()
                        .iter()
                        .find(|x| x.destination_cidr_block() == Some("0.0.0.0/0"))
                });
                match route {
                    Some(x) if x.gateway_id() == Some(igw.as_str()) => {}
                    Some(_) => self.default_route(&id, &igw, true).await?,
                    None => self.default_route(&id, &igw, false).await?,
                }
                Ok(Some(id))
            }
            Ec2Op::SetDefaultRoute {
                route_table,
                igw,
                replace,
            } => {
                self.default_route(route_table, &r(igw)?, *replace).await?;
                Ok(None)
            }
            Ec2Op::AssociateRouteTable {
                route_table,
                subnet,
            } => {
                let (rt, subnet) = (r(route_table)?, r(subnet)?);
                let out = c
                    .describe_route_tables()
                    .filters(filter("association.subnet-id", &subnet))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeRouteTables", &subnet, e))?;
                for t in out.route_tables() {
                    for a in t.associations() {
                        if a.subnet_id() != Some(subnet.as_str()) {
                            continue;
                        }
                        let aid = a.route_table_association_id().unwrap_or_default();
                        if t.route_table_id() == Some(rt.as_str()) {
                            return Ok(Some(aid.to_string()));
                        }
                        let out = c
                            .replace_route_table_association()
                            .association_id(aid)
                            .route_table_id(&rt)
                            .send()
                            .await
                            .map_err(|e| api_err("ReplaceRouteTableAssociation", &subnet, e))?;
                        return Ok(out.new_association_id().map(String::from));
                    }
                }
                let out = c
                    .associate_route_table()
                    .route_table_id(&rt)
                    .subnet_id(&subnet)
                    .send()
                    .await
                    .map_err(|e| api_err("AssociateRouteTable", &subnet, e))?;
                Ok(out.association_id().map(String::from))
            }
            Ec2Op::DisassociateRouteTable { association_id } => {
                match c
                    .disassociate_route_table()
                    .association_id(association_id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(None),
                    Err(e) if is_code(&e, &["InvalidAssociationID.NotFound"]) => Ok(None),
                    Err(e) => Err(api_err("DisassociateRouteTable", association_id, e)),
                }
            }
            Ec2Op::CreateSecurityGroup {
                vpc,
                name,
                description,
                tags,
            } => {
                let vpc = r(vpc)?;
                let out = c
                    .describe_security_groups()
                    .filters(filter("vpc-id", &vpc))
                    .filters(filter("group-name", name))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeSecurityGroups", name, e))?;
                if let Some(id) = out.security_groups().first().and_then(|g| g.group_id()) {
                    return Ok(Some(id.to_string()));
                }
                let out = c
                    .create_security_group()
                    .vpc_id(&vpc)
                    .group_name(name)
                    .description(description)
                    .tag_specifications(tag_spec(ResourceType::SecurityGroup, tags))
                    .send()
                    .await
                    .map_err(|e| api_err("CreateSecurityGroup", name, e))?;
                Ok(out.group_id().map(String::from))
            }
            Ec2Op::AuthorizeIngress {
                security_group,
                rule,
            } => {
                let sg = r(security_group)?;
                match c
                    .authorize_security_group_ingress()
                    .group_id(&sg)
                    .ip_permissions(permission(&rule.rule, Some(&rule.description)))
                    .send()
                    .await
                {
                    Ok(_) => Ok(None),
                    Err(e) if is_code(&e, &["InvalidPermission.Duplicate"]) => Ok(None),
                    Err(e) => Err(api_err(
                        "AuthorizeSecurityGroupIngress",
                        &format!("{sg} {}", rule.description),
                        e,
                    )),
                }
            }
            Ec2Op::RevokeIngress {
                security_group,
                rule,
            } => {
                match c
                    .revoke_security_group_ingress()
                    .group_id(security_group)
                    .ip_permissions(permission(rule, None))
                    .send()
                    .await
                {
                    Ok(_) => Ok(None),
                    Err(e) if is_code(&e, &["InvalidPermission.NotFound"]) => Ok(None),
                    Err(e) => Err(api_err("RevokeSecurityGroupIngress", security_group, e)),
                }
            }
            Ec2Op::ImportKeyPair {
                name,
                private_key,
                tags,
            } => {
                // Made on the operator's machine by the step's `LocalOp::EnsureSshKey`.
                let public = crate::ssh::keyfile::public_key(std::path::Path::new(private_key))
                    .map_err(|e| AwsError::Local {
                        what: format!("cannot read the SSH key for key pair {name}"),
                        source: Box::new(e),
                    })?
                    .ok_or_else(|| AwsError::Local {
                        what: format!("cannot read the SSH key for key pair {name}"),
                        source: format!("{private_key} does not exist").into(),
                    })?;
                let out = c
                    .describe_key_pairs()
                    .filters(filter("key-name", name))
                    .send()
                    .await
                    .map_err(|e| api_err("DescribeKeyPairs", name, e))?;
                if let Some(id) = out.key_pairs().first().and_then(|k| k.key_pair_id()) {
                    return Ok(Some(id.to_string()));
                }
                let out = c
                    .import_key_pair()
                    .key_name(name)
                    .public_key_material(Blob::new(public.into_bytes()))
                    .tag_specifications(tag_spec(ResourceType::KeyPair, tags))
                    .send()
                    .await
                    .map_err(|e| api_err("ImportKeyPair", name, e))?;
                Ok(out.key_pair_id().map(String::from))
            }
            Ec2Op::DeleteKeyPair { name } => {
                match c.delete_key_pair().key_name(name).send().await {
                    Ok(_) => Ok(None),
                    Err(e) if is_code(&e, &["InvalidKeyPair.NotFound"]) => Ok(None),
                    Err(e) => Err(api_err("DeleteKeyPair", name, e)),
                }
            }
            Ec2Op::RunInstance(run) => self
                .run_instance(run, &r(&run.subnet)?, &r(&run.security_group)?)
                .await
                .map(Some),
            Ec2Op::ReplaceInstance { terminate, run } => {
                self.terminate(terminate).await?;
                self.run_instance(run, &r(&run.subnet)?, &r(&run.security_group)?)
                    .await
                    .map(Some)
            }
            Ec2Op::StartInstance { instance } => {
                c.start_instances()
                    .instance_ids(instance)
                    .send()
                    .await
                    .map_err(|e| api_err("StartInstances", instance, e))?;
                self.wait_instance(instance, &["running"]).await?;
                Ok(None)
            }
            Ec2Op::ModifyInstanceType {
                instance,
                instance_type,
                restart,
            } => {
                if *restart {
                    c.stop_instances()
                        .instance_ids(instance)
                        .send()
                        .await
                        .map_err(|e| api_err("StopInstances", instance, e))?;
                    self.wait_instance(instance, &["stopped"]).await?;
                }
                c.modify_instance_attribute()
                    .instance_id(instance)
                    .instance_type(AttributeValue::builder().value(instance_type).build())
                    .send()
                    .await
                    .map_err(|e| api_err("ModifyInstanceAttribute", instance, e))?;
                if *restart {
                    c.start_instances()
                        .instance_ids(instance)
                        .send()
                        .await
                        .map_err(|e| api_err("StartInstances", instance, e))?;
                    self.wait_instance(instance, &["running"]).await?;
                }
                Ok(None)
            }
            Ec2Op::RequireImdsV2 { instance } => {
                c.modify_instance_metadata_options()
                    .instance_id(instance)
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .send()
                    .await
                    .map_err(|e| api_err("ModifyInstanceMetadataOptions", instance, e))?;
                Ok(None)
            }
            Ec2Op::TerminateInstance { instance } => {
                self.terminate(instance).await?;
                Ok(None)
            }
            Ec2Op::SetTags {
                resource,
                set,
                remove,
            } => {
                if !set.is_empty() {
                    let mut req = c.create_tags().resources(resource);
                    for (k, v) in set {
                        req = req.tags(Tag::builder().key(k).value(v).build());
                    }
                    req.send()
                        .await
                        .map_err(|e| api_err("CreateTags", resource, e))?;
                }
                if !remove.is_empty() {
                    let mut req = c.delete_tags().resources(resource);
                    for k in remove {
                        req = req.tags(Tag::builder().key(k).build());
                    }
                    req.send()
                        .await
                        .map_err(|e| api_err("DeleteTags", resource, e))?;
                }
                Ok(None)
            }
            Ec2Op::DeleteSecurityGroup { id } => {
                self.delete_with_retry(
                    "DeleteSecurityGroup",
                    id,
                    &["InvalidGroup.NotFound"],
                    || async {
                        c.delete_security_group()
                            .group_id(id)
                            .send()
                            .await
                            .map(|_| ())
                    },
                )
                .await
            }
            Ec2Op::DeleteRouteTable { id } => {
                let out = match c.describe_route_tables().route_table_ids(id).send().await {
                    Ok(o) => o,
                    Err(e) if is_code(&e, &["InvalidRouteTableID.NotFound"]) => return Ok(None),
                    Err(e) => return Err(api_err("DescribeRouteTables", id, e)),
                };
                for t in out.route_tables() {
                    for a in t
                        .associations()
                        .iter()
                        .filter(|a| !a.main().unwrap_or(false))
                    {
                        if let Some(aid) = a.route_table_association_id() {
                            match c
                                .disassociate_route_table()
                                .association_id(aid)
                                .send()
                                .await
                            {
                                Ok(_) => {}
                                Err(e) if is_code(&e, &["InvalidAssociationID.NotFound"]) => {}
                                Err(e) => return Err(api_err("DisassociateRouteTable", aid, e)),
                            }
                        }
                    }
                }
                self.delete_with_retry(
                    "DeleteRouteTable",
                    id,
                    &["InvalidRouteTableID.NotFound"],
                    || async {
                        c.delete_route_table()
                            .route_table_id(id)
                            .send()
                            .await
                            .map(|_| ())
                    },
                )
                .await
            }
            Ec2Op::DeleteInternetGateway { id, detach_from } => {
                for vpc in detach_from {
                    match c
                        .detach_internet_gateway()
                        .internet_gateway_id(id)
                        .vpc_id(vpc)
                        .send()
                        .await
                    {
                        Ok(_) => {}
                        Err(e)
                            if is_code(
                                &e,
                                &["Gateway.NotAttached", "InvalidInternetGatewayID.NotFound"],
                            ) => {}
                        Err(e) => return Err(api_err("DetachInternetGateway", id, e)),
                    }
                }
                self.delete_with_retry(
                    "DeleteInternetGateway",
                    id,
                    &["InvalidInternetGatewayID.NotFound"],
                    || async {
                        c.delete_internet_gateway()
                            .internet_gateway_id(id)
                            .send()
                            .await
                            .map(|_| ())
                    },
                )
                .await
            }
            Ec2Op::DeleteSubnet { id } => {
                self.delete_with_retry(
                    "DeleteSubnet",
                    id,
                    &["InvalidSubnetID.NotFound"],
                    || async { c.delete_subnet().subnet_id(id).send().await.map(|_| ()) },
                )
                .await
            }
            Ec2Op::DeleteVpc { id } => {
                self.delete_with_retry("DeleteVpc", id, &["InvalidVpcID.NotFound"], || async {
                    c.delete_vpc().vpc_id(id).send().await.map(|_| ())
                })
                .await
            }
            Ec2Op::DeleteVolume { id } => {
                self.delete_with_retry("DeleteVolume", id, &["InvalidVolume.NotFound"], || async {
                    c.delete_volume().volume_id(id).send().await.map(|_| ())
                })
                .await
            }
            Ec2Op::DeleteSnapshot { id } => {
                self.delete_with_retry(
                    "DeleteSnapshot",
                    id,
                    &["InvalidSnapshot.NotFound"],
                    || async { c.delete_snapshot().snapshot_id(id).send().await.map(|_| ()) },
                )
                .await
            }
        }
    }

    async fn set_subnet_public_ip(&self, subnet: &str, value: bool) -> Result<(), AwsError> {
        self.client
            .modify_subnet_attribute()
            .subnet_id(subnet)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(value).build())
            .send()
            .await
            .map_err(|e| api_err("ModifySubnetAttribute", subnet, e))?;
        Ok(())
    }

    async fn attach_igw(&self, igw: &str, vpc: &str) -> Result<(), AwsError> {
        match self
            .client
            .attach_internet_gateway()
            .internet_gateway_id(igw)
            .vpc_id(vpc)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["Resource.AlreadyAssociated"]) => Ok(()),
            Err(e) => Err(api_err("AttachInternetGateway", igw, e)),
        }
    }

    async fn default_route(&self, rt: &str, igw: &str, replace: bool) -> Result<(), AwsError> {
        let c = &self.client;
        let replace_route = || async {
            c.replace_route()
                .route_table_id(rt)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(igw)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| api_err("ReplaceRoute", rt, e))
        };
        if replace {
            return replace_route().await;
        }
        match c
            .create_route()
            .route_table_id(rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(igw)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["RouteAlreadyExists"]) => replace_route().await,
            Err(e) => Err(api_err("CreateRoute", rt, e)),
        }
    }

    /// The node's instance if one is already there (a rerun), else a new one; then wait until
    /// it runs.
    async fn run_instance(
        &self,
        run: &RunInstance,
        subnet: &str,
        sg: &str,
    ) -> Result<String, AwsError> {
        let c = &self.client;
        let out = c
            .describe_instances()
            .set_filters(Some(tag_filters(&run.tags, &[tags::CLUSTER, tags::NODE])))
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
                    .values("stopping")
                    .values("stopped")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| api_err("DescribeInstances", &run.node, e))?;
        let existing = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.instance_id());
        let id = match existing {
            Some(id) => id.to_string(),
            None => {
                let mut ebs = EbsBlockDevice::builder()
                    .volume_size(run.volume_size_gib as i32)
                    .volume_type(VolumeType::from(run.volume_type.as_str()))
                    .delete_on_termination(true)
                    .encrypted(run.encrypted);
                if let Some(k) = &run.kms_key {
                    ebs = ebs.kms_key_id(k);
                }
                let out = c
                    .run_instances()
                    .image_id(&run.image_id)
                    .instance_type(InstanceType::from(run.instance_type.as_str()))
                    .min_count(1)
                    .max_count(1)
                    .key_name(&run.key_name)
                    .subnet_id(subnet)
                    .private_ip_address(run.private_ip.to_string())
                    .security_group_ids(sg)
                    .client_token(&run.client_token)
                    .block_device_mappings(
                        BlockDeviceMapping::builder()
                            .device_name(&run.root_device)
                            .ebs(ebs.build())
                            .build(),
                    )
                    .metadata_options(
                        InstanceMetadataOptionsRequest::builder()
                            .http_tokens(HttpTokensState::Required)
                            .build(),
                    )
                    .tag_specifications(tag_spec(ResourceType::Instance, &run.tags))
                    .tag_specifications(tag_spec(ResourceType::Volume, &run.volume_tags))
                    .send()
                    .await
                    .map_err(|e| {
                        api_err(
                            "RunInstances",
                            &format!("node {} ({})", run.node, run.private_ip),
                            e,
                        )
                    })?;
                out.instances()
                    .first()
                    .and_then(|i| i.instance_id())
                    .unwrap_or_default()
                    .to_string()
            }
        };
        self.wait_instance(&id, &["running"]).await?;
        Ok(id)
    }

    async fn terminate(&self, instance: &str) -> Result<(), AwsError> {
        match self
            .client
            .terminate_instances()
            .instance_ids(instance)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, &["InvalidInstanceID.NotFound"]) => return Ok(()),
            Err(e) => return Err(api_err("TerminateInstances", instance, e)),
        }
        self.wait_instance(instance, &["terminated"]).await
    }

    /// Wait until the instance is in one of `states` (a vanished instance counts as terminated).
    pub(crate) async fn wait_instance(
        &self,
        instance: &str,
        states: &[&str],
    ) -> Result<(), AwsError> {
        let c = self.client.clone();
        wait_for(
            format!("instance {instance} to be {}", states.join(" or ")),
            self.instance_wait,
            self.poll,
            || {
                let c = c.clone();
                async move {
                    let out = match c.describe_instances().instance_ids(instance).send().await {
                        Ok(o) => o,
                        Err(e) if is_code(&e, &["InvalidInstanceID.NotFound"]) => {
                            return Ok(states.contains(&"terminated").then_some(()));
                        }
                        Err(e) => return Err(api_err("DescribeInstances", instance, e)),
                    };
                    let state = out
                        .reservations()
                        .iter()
                        .flat_map(|r| r.instances())
                        .find_map(|i| {
                            i.state()
                                .and_then(|s| s.name())
                                .map(|n| n.as_str().to_string())
                        });
                    Ok(match state {
                        Some(s) if states.contains(&s.as_str()) => Some(()),
                        None if states.contains(&"terminated") => Some(()),
                        _ => None,
                    })
                }
            },
        )
        .await
    }

    /// A delete that AWS may refuse for a while (DependencyViolation while ENIs of terminated
    /// instances go away, IncorrectState while a volume detaches); gone already is success.
    async fn delete_with_retry<F, Fut, E>(
        &self,
        call: &'static str,
        id: &str,
        gone: &[&str],
        mut f: F,
    ) -> Result<Option<String>, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<
                Output = Result<
                    (),
                    aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
                >,
            >,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let start = std::time::Instant::now();
        loop {
            match f().await {
                Ok(()) => return Ok(None),
                Err(e) if is_code(&e, gone) => return Ok(None),
                Err(e)
                    if is_code(
                        &e,
                        &[
                            "DependencyViolation",
                            "IncorrectState",
                            "VolumeInUse",
                            "InvalidSnapshot.InUse",
                        ],
                    ) && start.elapsed() < self.dependency_wait =>
                {
                    tracing::debug!("{call} {id}: {:?}; retrying", e.code());
                    tokio::time::sleep(self.poll).await;
                }
                Err(e) => return Err(api_err(call, id, e)),
            }
        }
    }
}
