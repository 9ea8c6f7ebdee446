//! The executor's EC2 operations (`Ec2Op`, every one matched). Each is an idempotent ensure: it
//! looks for the resource by its identity first and adopts it, so re-running a half-applied plan
//! makes no duplicates. Tags are written at creation (TagSpecifications); the ones written
//! after are state that changes (`SetTags`, the host-key pin, the swap's stage).
//!
//! `run_op` resolves the operation's step references and calls one function per operation:
//! the network's in `network.rs`, the instances' in `instances.rs`.

use std::collections::BTreeMap;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;

use super::network::Target;
use super::{Aws, AwsError, api_err, filter};
use crate::observed::Tags;
use crate::plan::{Ec2Op, Ref, RouteTarget};

/// Describe filters on the values of `keys` in `t` (identity tags).
pub(super) fn tag_filters(t: &Tags, keys: &[&str]) -> Vec<Filter> {
    keys.iter()
        .filter_map(|k| t.get(*k).map(|v| filter(&format!("tag:{k}"), v)))
        .collect()
}

pub(super) fn is_code<E: ProvideErrorMetadata>(e: &E, codes: &[&str]) -> bool {
    e.code().is_some_and(|c| codes.contains(&c))
}

/// The id `x` stands for: given, or produced by an earlier step (in `made`).
fn resolve(x: &Ref, made: &BTreeMap<String, String>) -> Result<String, AwsError> {
    match x {
        Ref::Id(id) => Ok(id.clone()),
        Ref::Step(a) => made.get(a).cloned().ok_or_else(|| AwsError::Local {
            what: format!("internal: {a} has not produced an id"),
            source: "dependency order".into(),
        }),
    }
}

/// A default route's target with its id resolved (`true`: a NAT gateway).
fn resolve_target(
    t: Option<&RouteTarget>,
    made: &BTreeMap<String, String>,
) -> Result<Option<(bool, String)>, AwsError> {
    Ok(match t {
        None => None,
        Some(RouteTarget::InternetGateway(x)) => Some((false, resolve(x, made)?)),
        Some(RouteTarget::NatGateway(x)) => Some((true, resolve(x, made)?)),
    })
}

fn target_ref(t: &Option<(bool, String)>) -> Option<Target<'_>> {
    t.as_ref().map(|(nat, id)| match nat {
        true => Target::NatGateway(id),
        false => Target::InternetGateway(id),
    })
}

impl Aws {
    /// Carry out one operation. `made` maps step addresses to the ids their steps produced.
    /// Returns the id this operation produced or adopted, if any.
    pub async fn run_op(
        &self,
        op: &Ec2Op,
        made: &BTreeMap<String, String>,
    ) -> Result<Option<String>, AwsError> {
        let r = |x: &Ref| resolve(x, made);
        let c = &self.client;
        match op {
            Ec2Op::CreateVpc { cidr, tags } => self.ensure_vpc(cidr, tags).await.map(Some),
            Ec2Op::CreateSubnet {
                vpc,
                cidr,
                az,
                map_public_ip,
                tags,
            } => self
                .ensure_subnet(&r(vpc)?, cidr, az, *map_public_ip, tags)
                .await
                .map(Some),
            Ec2Op::SetSubnetPublicIp {
                subnet,
                map_public_ip,
            } => self
                .set_subnet_public_ip(subnet, *map_public_ip)
                .await
                .map(|()| None),
            Ec2Op::CreateInternetGateway { vpc, tags } => {
                self.ensure_internet_gateway(&r(vpc)?, tags).await.map(Some)
            }
            Ec2Op::AttachInternetGateway { igw, vpc } => {
                self.attach_igw(igw, &r(vpc)?).await.map(|()| None)
            }
            Ec2Op::CreateRouteTable { vpc, target, tags } => {
                let vpc = r(vpc)?;
                let target = resolve_target(target.as_ref(), made)?;
                self.ensure_route_table(&vpc, target_ref(&target), tags)
                    .await
                    .map(Some)
            }
            Ec2Op::SetDefaultRoute {
                route_table,
                target,
                replace,
            } => {
                let target = resolve_target(target.as_ref(), made)?;
                self.default_route(route_table, target_ref(&target), *replace)
                    .await
                    .map(|()| None)
            }
            Ec2Op::AllocateAddress { tags } => self.ensure_address(tags).await.map(Some),
            Ec2Op::CreateNatGateway {
                subnet,
                allocation,
                tags,
            } => {
                let (subnet, allocation) = (r(subnet)?, r(allocation)?);
                self.ensure_nat_gateway(&subnet, &allocation, tags)
                    .await
                    .map(Some)
            }
            Ec2Op::DeleteNatGateway { id } => self.delete_nat_gateway(id).await.map(|()| None),
            Ec2Op::ReleaseAddress { allocation_id } => {
                self.release_address(allocation_id).await.map(|()| None)
            }
            Ec2Op::AssociateRouteTable {
                route_table,
                subnet,
            } => {
                let (rt, subnet) = (r(route_table)?, r(subnet)?);
                self.associate_route_table(&rt, &subnet).await
            }
            Ec2Op::DisassociateRouteTable { association_id } => self
                .disassociate_route_table(association_id)
                .await
                .map(|()| None),
            Ec2Op::CreateSecurityGroup {
                vpc,
                name,
                description,
                tags,
            } => {
                self.ensure_security_group(&r(vpc)?, name, description, tags)
                    .await
            }
            Ec2Op::AuthorizeIngress {
                security_group,
                rule,
            } => self
                .authorize_ingress(&r(security_group)?, rule)
                .await
                .map(|()| None),
            Ec2Op::RevokeIngress {
                security_group,
                rule,
            } => self
                .revoke_ingress(security_group, rule)
                .await
                .map(|()| None),
            Ec2Op::ImportKeyPair {
                name,
                private_key,
                tags,
            } => self.import_key_pair(name, private_key, tags).await,
            Ec2Op::DeleteKeyPair { name } => self.delete_key_pair(name).await.map(|()| None),
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
            Ec2Op::StartInstance { instance } => self.start_instance(instance).await.map(|()| None),
            Ec2Op::ModifyInstanceType {
                instance,
                instance_type,
                restart,
            } => self
                .modify_instance_type(instance, instance_type, *restart)
                .await
                .map(|()| None),
            Ec2Op::RequireImdsV2 { instance } => {
                self.require_imds_v2(instance).await.map(|()| None)
            }
            Ec2Op::TerminateInstance { instance } => self.terminate(instance).await.map(|()| None),
            Ec2Op::SetTags {
                resource,
                set,
                remove,
            } => self.set_tags(resource, set, remove).await.map(|()| None),
            Ec2Op::DeleteSecurityGroup { id } => {
                self.delete_security_group(id).await.map(|()| None)
            }
            Ec2Op::DeleteRouteTable { id } => self.delete_route_table(id).await.map(|()| None),
            Ec2Op::DeleteInternetGateway { id, detach_from } => self
                .delete_internet_gateway(id, detach_from)
                .await
                .map(|()| None),
            Ec2Op::DeleteSubnet { id } => self.delete_subnet(id).await.map(|()| None),
            Ec2Op::DeleteVpc { id } => self.delete_vpc(id).await.map(|()| None),
            Ec2Op::DeleteVolume { id } => self
                .delete_with_retry("DeleteVolume", id, &["InvalidVolume.NotFound"], || async {
                    c.delete_volume().volume_id(id).send().await.map(|_| ())
                })
                .await
                .map(|()| None),
            Ec2Op::DeleteSnapshot { id } => self
                .delete_with_retry(
                    "DeleteSnapshot",
                    id,
                    &["InvalidSnapshot.NotFound"],
                    || async { c.delete_snapshot().snapshot_id(id).send().await.map(|_| ()) },
                )
                .await
                .map(|()| None),
        }
    }

    /// A delete that AWS may refuse for a while (DependencyViolation while ENIs of terminated
    /// instances go away, IncorrectState while a volume detaches); gone already is success.
    pub(super) async fn delete_with_retry<F, Fut, E>(
        &self,
        call: &'static str,
        id: &str,
        gone: &[&str],
        f: F,
    ) -> Result<(), AwsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<
                Output = Result<(), SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>,
            >,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        const BUSY: &[&str] = &[
            "DependencyViolation",
            "IncorrectState",
            "VolumeInUse",
            "InvalidSnapshot.InUse",
        ];
        match self.settle(call, id, &[id], BUSY, f).await {
            Ok(()) => Ok(()),
            Err(e) if is_code(&e, gone) => Ok(()),
            Err(e) => Err(api_err(call, id, e)),
        }
    }
}
