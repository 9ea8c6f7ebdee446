//! The NAT gateway of `network.egress = "nat-gateway"` and its Elastic IP: ensured (found by
//! their tags, else made), waited for (`pending` → `available`, `deleting` → `deleted`) and
//! deleted. EC2 takes a minute or two for each wait, and keeps a deleted gateway's network
//! interface in its subnet, and its address, until the gateway is `deleted`.

use aws_sdk_ec2::types::{ConnectivityType, DomainType, NatGateway, ResourceType};

use super::ops::{is_code, tag_filters};
use super::{Aws, AwsError, api_err, attempt_token, tag_spec, wait_for};
use crate::observed::{Tags, tags};

/// EC2's reason for a `failed` gateway (`FailureCode: FailureMessage`).
fn failure(g: &NatGateway) -> Option<String> {
    match (g.failure_code(), g.failure_message()) {
        (None, None) => None,
        (c, m) => Some(format!("{}: {}", c.unwrap_or("?"), m.unwrap_or(""))),
    }
}

fn state(g: &NatGateway) -> &str {
    g.state().map(|s| s.as_str()).unwrap_or("")
}

impl Aws {
    /// The NAT gateway's Elastic IP (found by its tags, else allocated); its allocation id.
    pub(super) async fn ensure_address(&self, tags: &Tags) -> Result<String, AwsError> {
        let c = &self.client;
        let out = c
            .describe_addresses()
            .set_filters(Some(tag_filters(tags, &[tags::CLUSTER, tags::ROLE])))
            .send()
            .await
            .map_err(|e| api_err("DescribeAddresses", "Elastic IP", e))?;
        if let Some(id) = out.addresses().first().and_then(|a| a.allocation_id()) {
            return Ok(id.to_string());
        }
        let out = c
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_spec(ResourceType::ElasticIp, tags))
            .send()
            .await
            .map_err(|e| api_err("AllocateAddress", "Elastic IP", e))?;
        Ok(self.made(out.allocation_id()))
    }

    /// The NAT gateway (found by its tags while `pending` or `available`, else created in
    /// `subnet` with the Elastic IP `allocation`), once it is `available`.
    pub(super) async fn ensure_nat_gateway(
        &self,
        subnet: &str,
        allocation: &str,
        tags: &Tags,
    ) -> Result<String, AwsError> {
        let c = &self.client;
        let out = c
            .describe_nat_gateways()
            .set_filter(Some(tag_filters(tags, &[tags::CLUSTER, tags::ROLE])))
            .filter(
                aws_sdk_ec2::types::Filter::builder()
                    .name("state")
                    .values("pending")
                    .values("available")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| api_err("DescribeNatGateways", "NAT gateway", e))?;
        let id = match out.nat_gateways().first().and_then(|g| g.nat_gateway_id()) {
            Some(id) => id.to_string(),
            None => {
                let token = attempt_token("the NAT gateway")?;
                self.made(
                    self.settle(
                        "CreateNatGateway",
                        subnet,
                        &[subnet, allocation],
                        &[],
                        || {
                            c.create_nat_gateway()
                                .subnet_id(subnet)
                                .allocation_id(allocation)
                                .connectivity_type(ConnectivityType::Public)
                                .client_token(&token)
                                .tag_specifications(tag_spec(ResourceType::Natgateway, tags))
                                .send()
                        },
                    )
                    .await
                    .map_err(|e| api_err("CreateNatGateway", subnet, e))?
                    .nat_gateway()
                    .and_then(|g| g.nat_gateway_id()),
                )
            }
        };
        self.wait_nat_gateway(&id, "available").await?;
        Ok(id)
    }

    /// Wait until the gateway is in `want` (`available`, or `deleted`: gone counts). A gateway
    /// that went `failed` ends the wait with EC2's reason.
    async fn wait_nat_gateway(&self, id: &str, want: &'static str) -> Result<(), AwsError> {
        let what = format!("NAT gateway {id} to be {want}");
        wait_for(what.clone(), self.instance_wait, self.poll, || async {
            let out = match self
                .settle("DescribeNatGateways", id, &[id], &[], || {
                    self.client
                        .describe_nat_gateways()
                        .nat_gateway_ids(id)
                        .send()
                })
                .await
            {
                Ok(o) => o,
                Err(e) if want == "deleted" && is_code(&e, &["NatGatewayNotFound"]) => {
                    return Ok(Some(()));
                }
                Err(e) => return Err(api_err("DescribeNatGateways", id, e)),
            };
            let Some(g) = out.nat_gateways().first() else {
                return Ok((want == "deleted").then_some(()));
            };
            match state(g) {
                s if s == want => Ok(Some(())),
                "failed" if want == "available" => Err(AwsError::Ended {
                    what: format!("while waiting for {what}"),
                    state: "failed".into(),
                    reason: failure(g),
                }),
                "failed" | "deleted" if want == "deleted" => Ok(Some(())),
                _ => Ok(None),
            }
        })
        .await
    }

    /// Delete the gateway and wait until it is `deleted`; gone already is done.
    pub(super) async fn delete_nat_gateway(&self, id: &str) -> Result<(), AwsError> {
        match self
            .client
            .delete_nat_gateway()
            .nat_gateway_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_code(&e, &["NatGatewayNotFound", "InvalidNatGatewayID.NotFound"]) => {
                return Ok(());
            }
            Err(e) => return Err(api_err("DeleteNatGateway", id, e)),
        }
        self.wait_nat_gateway(id, "deleted").await
    }

    /// Release the Elastic IP. EC2 refuses while a NAT gateway that is going away still holds
    /// it: retried within `dependency_wait`.
    pub(super) async fn release_address(&self, allocation_id: &str) -> Result<(), AwsError> {
        let c = &self.client;
        match self
            .settle(
                "ReleaseAddress",
                allocation_id,
                &[allocation_id],
                &["InvalidIPAddress.InUse"],
                || c.release_address().allocation_id(allocation_id).send(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_code(&e, &["InvalidAllocationID.NotFound"]) => Ok(()),
            Err(e) => Err(api_err("ReleaseAddress", allocation_id, e)),
        }
    }
}
