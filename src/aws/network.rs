//! The cluster's network, ensured and deleted: VPC, subnets, internet gateway, route tables and
//! their default routes, security group and its ingress rules (the NAT gateway: `nat.rs`). Each ensure adopts what it finds by
//! identity (tags, CIDR, name); each delete counts a resource already gone as done.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType,
    UserIdGroupPair,
};

use super::ops::{is_code, tag_filters};
use super::{Aws, AwsError, api_err, attempt_token, filter, tag_spec};
use crate::observed::{IngressRule, SELF_SOURCE, Tags, tags};
use crate::plan::RuleSpec;

/// The rule as EC2 takes it, in group `sg` (a [`SELF_SOURCE`] rule references `sg` itself).
fn permission(rule: &IngressRule, sg: &str, description: Option<&str>) -> IpPermission {
    let b = IpPermission::builder()
        .ip_protocol(&rule.protocol)
        .from_port(rule.from_port)
        .to_port(rule.to_port);
    let src = &rule.source;
    let b = if src == SELF_SOURCE {
        b.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(sg)
                .set_description(description.map(String::from))
                .build(),
        )
    } else if src.starts_with("sg-") {
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

/// A default route's target, resolved to its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target<'a> {
    InternetGateway(&'a str),
    NatGateway(&'a str),
}

impl<'a> Target<'a> {
    pub(super) fn id(self) -> &'a str {
        match self {
            Target::InternetGateway(id) | Target::NatGateway(id) => id,
        }
    }
}

impl Aws {
    /// The cluster's VPC (found by tags and CIDR, else created), with DNS support and hostnames.
    pub(super) async fn ensure_vpc(&self, cidr: &str, tags: &Tags) -> Result<String, AwsError> {
        let c = &self.client;
        let mut found = c
            .describe_vpcs()
            .set_filters(Some(tag_filters(tags, &[tags::CLUSTER, tags::ROLE])));
        // DescribeVpcs calls the primary block `cidr` (DescribeSubnets says `cidr-block`); EC2
        // refuses a filter name it does not know.
        found = found.filters(filter("cidr", cidr));
        let out = found
            .send()
            .await
            .map_err(|e| api_err("DescribeVpcs", cidr, e))?;
        let id = match out.vpcs().first().and_then(|v| v.vpc_id()) {
            Some(id) => id.to_string(),
            None => self.made(
                c.create_vpc()
                    .cidr_block(cidr)
                    .tag_specifications(tag_spec(ResourceType::Vpc, tags))
                    .send()
                    .await
                    .map_err(|e| api_err("CreateVpc", cidr, e))?
                    .vpc()
                    .and_then(|v| v.vpc_id()),
            ),
        };
        let yes = || AttributeBooleanValue::builder().value(true).build();
        self.settle("ModifyVpcAttribute", &id, &[&id], &[], || {
            c.modify_vpc_attribute()
                .vpc_id(&id)
                .enable_dns_support(yes())
                .send()
        })
        .await
        .map_err(|e| api_err("ModifyVpcAttribute", &id, e))?;
        self.settle("ModifyVpcAttribute", &id, &[&id], &[], || {
            c.modify_vpc_attribute()
                .vpc_id(&id)
                .enable_dns_hostnames(yes())
                .send()
        })
        .await
        .map_err(|e| api_err("ModifyVpcAttribute", &id, e))?;
        Ok(id)
    }

    /// The subnet with `cidr` in `vpc` (found, else created in `az`), mapping public IPs or not.
    pub(super) async fn ensure_subnet(
        &self,
        vpc: &str,
        cidr: &str,
        az: &str,
        map_public_ip: bool,
        tags: &Tags,
    ) -> Result<String, AwsError> {
        let c = &self.client;
        let out = c
            .describe_subnets()
            .filters(filter("vpc-id", vpc))
            .filters(filter("cidr-block", cidr))
            .send()
            .await
            .map_err(|e| api_err("DescribeSubnets", cidr, e))?;
        let id = match out.subnets().first().and_then(|s| s.subnet_id()) {
            Some(id) => id.to_string(),
            None => self.made(
                self.settle("CreateSubnet", cidr, &[vpc], &[], || {
                    c.create_subnet()
                        .vpc_id(vpc)
                        .cidr_block(cidr)
                        .availability_zone(az)
                        .tag_specifications(tag_spec(ResourceType::Subnet, tags))
                        .send()
                })
                .await
                .map_err(|e| api_err("CreateSubnet", cidr, e))?
                .subnet()
                .and_then(|s| s.subnet_id()),
            ),
        };
        self.set_subnet_public_ip(&id, map_public_ip).await?;
        Ok(id)
    }

    pub(super) async fn set_subnet_public_ip(
        &self,
        subnet: &str,
        value: bool,
    ) -> Result<(), AwsError> {
        self.settle("ModifySubnetAttribute", subnet, &[subnet], &[], || {
            self.client
                .modify_subnet_attribute()
                .subnet_id(subnet)
                .map_public_ip_on_launch(AttributeBooleanValue::builder().value(value).build())
                .send()
        })
        .await
        .map_err(|e| api_err("ModifySubnetAttribute", subnet, e))?;
        Ok(())
    }

    /// The cluster's internet gateway (found by tags, else created), attached to `vpc`.
    pub(super) async fn ensure_internet_gateway(
        &self,
        vpc: &str,
        tags: &Tags,
    ) -> Result<String, AwsError> {
        let c = &self.client;
        let out = c
            .describe_internet_gateways()
            .set_filters(Some(tag_filters(tags, &[tags::CLUSTER, tags::ROLE])))
            .send()
            .await
            .map_err(|e| api_err("DescribeInternetGateways", "igw", e))?;
        let existing = out.internet_gateways().first();
        let id = match existing.and_then(|g| g.internet_gateway_id()) {
            Some(id) => id.to_string(),
            None => self.made(
                c.create_internet_gateway()
                    .tag_specifications(tag_spec(ResourceType::InternetGateway, tags))
                    .send()
                    .await
                    .map_err(|e| api_err("CreateInternetGateway", "igw", e))?
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id()),
            ),
        };
        let attached =
            existing.is_some_and(|g| g.attachments().iter().any(|a| a.vpc_id() == Some(vpc)));
        if !attached {
            self.attach_igw(&id, vpc).await?;
        }
        Ok(id)
    }

    pub(super) async fn attach_igw(&self, igw: &str, vpc: &str) -> Result<(), AwsError> {
        match self
            .settle("AttachInternetGateway", igw, &[igw, vpc], &[], || {
                self.client
                    .attach_internet_gateway()
                    .internet_gateway_id(igw)
                    .vpc_id(vpc)
                    .send()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["Resource.AlreadyAssociated"]) => Ok(()),
            Err(e) => Err(api_err("AttachInternetGateway", igw, e)),
        }
    }

    /// A route table of the cluster in `vpc` (found by its tags, else created) whose default
    /// route goes to `target` (none: it has no default route).
    pub(super) async fn ensure_route_table(
        &self,
        vpc: &str,
        target: Option<Target<'_>>,
        tags: &Tags,
    ) -> Result<String, AwsError> {
        let c = &self.client;
        let out = c
            .describe_route_tables()
            .set_filters(Some(tag_filters(tags, &[tags::CLUSTER, tags::ROLE])))
            .filters(filter("vpc-id", vpc))
            .send()
            .await
            .map_err(|e| api_err("DescribeRouteTables", "route table", e))?;
        let existing = out.route_tables().first();
        let id = match existing.and_then(|t| t.route_table_id()) {
            Some(id) => id.to_string(),
            None => {
                let token = attempt_token("the route table")?;
                self.made(
                    self.settle("CreateRouteTable", vpc, &[vpc], &[], || {
                        c.create_route_table()
                            .vpc_id(vpc)
                            .client_token(&token)
                            .tag_specifications(tag_spec(ResourceType::RouteTable, tags))
                            .send()
                    })
                    .await
                    .map_err(|e| api_err("CreateRouteTable", vpc, e))?
                    .route_table()
                    .and_then(|t| t.route_table_id()),
                )
            }
        };
        let route = existing.and_then(|t| {
            t.routes()
                .iter()
                .find(|x| x.destination_cidr_block() == Some("0.0.0.0/0"))
        });
        let now = route.and_then(|x| x.gateway_id().or(x.nat_gateway_id()));
        if now != target.map(Target::id) {
            self.default_route(&id, target, route.is_some()).await?;
        }
        Ok(id)
    }

    /// Create or replace the default route of `rt` (to `target`), or delete it (none).
    pub(super) async fn default_route(
        &self,
        rt: &str,
        target: Option<Target<'_>>,
        replace: bool,
    ) -> Result<(), AwsError> {
        let c = &self.client;
        let Some(target) = target else {
            return match c
                .delete_route()
                .route_table_id(rt)
                .destination_cidr_block("0.0.0.0/0")
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_code(&e, &["InvalidRoute.NotFound"]) => Ok(()),
                Err(e) => Err(api_err("DeleteRoute", rt, e)),
            };
        };
        let named = [rt, target.id()];
        let replace_route = || async {
            self.settle("ReplaceRoute", rt, &named, &[], || {
                let call = c
                    .replace_route()
                    .route_table_id(rt)
                    .destination_cidr_block("0.0.0.0/0");
                match target {
                    Target::InternetGateway(g) => call.gateway_id(g),
                    Target::NatGateway(n) => call.nat_gateway_id(n),
                }
                .send()
            })
            .await
            .map(|_| ())
            .map_err(|e| api_err("ReplaceRoute", rt, e))
        };
        if replace {
            return replace_route().await;
        }
        match self
            .settle("CreateRoute", rt, &named, &[], || {
                let call = c
                    .create_route()
                    .route_table_id(rt)
                    .destination_cidr_block("0.0.0.0/0");
                match target {
                    Target::InternetGateway(g) => call.gateway_id(g),
                    Target::NatGateway(n) => call.nat_gateway_id(n),
                }
                .send()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["RouteAlreadyExists"]) => replace_route().await,
            Err(e) => Err(api_err("CreateRoute", rt, e)),
        }
    }

    /// Associate `subnet` with `rt`, moving an association with another table; returns the
    /// association id.
    pub(super) async fn associate_route_table(
        &self,
        rt: &str,
        subnet: &str,
    ) -> Result<Option<String>, AwsError> {
        let c = &self.client;
        let out = c
            .describe_route_tables()
            .filters(filter("association.subnet-id", subnet))
            .send()
            .await
            .map_err(|e| api_err("DescribeRouteTables", subnet, e))?;
        for t in out.route_tables() {
            for a in t.associations() {
                if a.subnet_id() != Some(subnet) {
                    continue;
                }
                let aid = a.route_table_association_id().unwrap_or_default();
                if t.route_table_id() == Some(rt) {
                    return Ok(Some(aid.to_string()));
                }
                let out = c
                    .replace_route_table_association()
                    .association_id(aid)
                    .route_table_id(rt)
                    .send()
                    .await
                    .map_err(|e| api_err("ReplaceRouteTableAssociation", subnet, e))?;
                return Ok(out.new_association_id().map(String::from));
            }
        }
        let out = self
            .settle("AssociateRouteTable", subnet, &[rt, subnet], &[], || {
                c.associate_route_table()
                    .route_table_id(rt)
                    .subnet_id(subnet)
                    .send()
            })
            .await
            .map_err(|e| api_err("AssociateRouteTable", subnet, e))?;
        Ok(out.association_id().map(String::from))
    }

    pub(super) async fn disassociate_route_table(
        &self,
        association_id: &str,
    ) -> Result<(), AwsError> {
        match self
            .client
            .disassociate_route_table()
            .association_id(association_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidAssociationID.NotFound"]) => Ok(()),
            Err(e) => Err(api_err("DisassociateRouteTable", association_id, e)),
        }
    }

    /// The security group `name` in `vpc` (found, else created).
    pub(super) async fn ensure_security_group(
        &self,
        vpc: &str,
        name: &str,
        description: &str,
        tags: &Tags,
    ) -> Result<Option<String>, AwsError> {
        let c = &self.client;
        let out = c
            .describe_security_groups()
            .filters(filter("vpc-id", vpc))
            .filters(filter("group-name", name))
            .send()
            .await
            .map_err(|e| api_err("DescribeSecurityGroups", name, e))?;
        if let Some(id) = out.security_groups().first().and_then(|g| g.group_id()) {
            return Ok(Some(id.to_string()));
        }
        let out = self
            .settle("CreateSecurityGroup", name, &[vpc], &[], || {
                c.create_security_group()
                    .vpc_id(vpc)
                    .group_name(name)
                    .description(description)
                    .tag_specifications(tag_spec(ResourceType::SecurityGroup, tags))
                    .send()
            })
            .await
            .map_err(|e| api_err("CreateSecurityGroup", name, e))?;
        Ok(out.group_id().map(|id| self.made(Some(id))))
    }

    pub(super) async fn authorize_ingress(
        &self,
        sg: &str,
        rule: &RuleSpec,
    ) -> Result<(), AwsError> {
        match self
            .settle("AuthorizeSecurityGroupIngress", sg, &[sg], &[], || {
                self.client
                    .authorize_security_group_ingress()
                    .group_id(sg)
                    .ip_permissions(permission(&rule.rule, sg, Some(&rule.description)))
                    .send()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidPermission.Duplicate"]) => Ok(()),
            Err(e) => Err(api_err(
                "AuthorizeSecurityGroupIngress",
                &format!("{sg} {}", rule.description),
                e,
            )),
        }
    }

    pub(super) async fn revoke_ingress(
        &self,
        security_group: &str,
        rule: &IngressRule,
    ) -> Result<(), AwsError> {
        match self
            .client
            .revoke_security_group_ingress()
            .group_id(security_group)
            .ip_permissions(permission(rule, security_group, None))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidPermission.NotFound"]) => Ok(()),
            Err(e) => Err(api_err("RevokeSecurityGroupIngress", security_group, e)),
        }
    }

    pub(super) async fn delete_security_group(&self, id: &str) -> Result<(), AwsError> {
        let c = &self.client;
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

    /// Disassociate the table from its subnets (not the main association), then delete it.
    pub(super) async fn delete_route_table(&self, id: &str) -> Result<(), AwsError> {
        let c = &self.client;
        let out = match c.describe_route_tables().route_table_ids(id).send().await {
            Ok(o) => o,
            Err(e) if is_code(&e, &["InvalidRouteTableID.NotFound"]) => return Ok(()),
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

    /// Detach the gateway from `detach_from`, then delete it.
    pub(super) async fn delete_internet_gateway(
        &self,
        id: &str,
        detach_from: &[String],
    ) -> Result<(), AwsError> {
        let c = &self.client;
        for vpc in detach_from {
            // Right after the instances are terminated, EC2 refuses while their public
            // addresses are still mapped.
            match self
                .settle(
                    "DetachInternetGateway",
                    id,
                    &[id, vpc],
                    &["DependencyViolation"],
                    || {
                        c.detach_internet_gateway()
                            .internet_gateway_id(id)
                            .vpc_id(vpc)
                            .send()
                    },
                )
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

    pub(super) async fn delete_subnet(&self, id: &str) -> Result<(), AwsError> {
        let c = &self.client;
        self.delete_with_retry(
            "DeleteSubnet",
            id,
            &["InvalidSubnetID.NotFound"],
            || async { c.delete_subnet().subnet_id(id).send().await.map(|_| ()) },
        )
        .await
    }

    pub(super) async fn delete_vpc(&self, id: &str) -> Result<(), AwsError> {
        let c = &self.client;
        self.delete_with_retry("DeleteVpc", id, &["InvalidVpcID.NotFound"], || async {
            c.delete_vpc().vpc_id(id).send().await.map(|_| ())
        })
        .await
    }
}
