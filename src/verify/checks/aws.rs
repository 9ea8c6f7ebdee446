//! The AWS checks, judged on the observation `plan` makes (and one DescribeVolumes): the
//! security group, the instances' metadata options, the root volumes' encryption.

use crate::aws::VolumeFacts;
use crate::observed::{self, Observed, tags};
use crate::plan::security;
use crate::spec::Spec;
use crate::verify::Check;

/// The cluster's live instance for a node of the spec (not terminated), at the node's private
/// IP, as the node runtime picks it: another instance carrying the node's tags in the cluster's
/// network (one someone else launched) is not judged in its place.
pub fn node_instance<'o>(
    observed: &'o Observed,
    node: &crate::spec::Node,
) -> Option<&'o observed::Instance> {
    observed.instances.iter().find(|i| {
        i.tags.get(tags::NODE) == Some(&node.name)
            && i.state != "terminated"
            && i.private_ip == Some(node.private_ip)
    })
}

/// The security group lets in exactly what the spec allows (no rule missing, none added out of
/// band) and every node is in it and in no other group.
pub fn security_group(spec: &Spec, observed: &Observed) -> Check {
    let name = "security group";
    let groups: Vec<&observed::SecurityGroup> = observed
        .security_groups
        .iter()
        .filter(|g| {
            g.tags.get(tags::ROLE).map(String::as_str) == Some(tags::Role::SecurityGroup.as_str())
        })
        .collect();
    let [sg] = groups[..] else {
        let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        return Check::fail(
            name,
            vec![format!(
                "expected one security group tagged for the cluster, found {}: {}",
                ids.len(),
                if ids.is_empty() {
                    "-".into()
                } else {
                    ids.join(", ")
                }
            )],
        );
    };
    let mut passed = true;
    let mut ev = vec![format!("{} ({}), ingress:", sg.id, sg.name)];
    let wanted = security::ingress_rules(spec);
    for w in &wanted {
        let what = format!(
            "{} {}/{} from {}",
            w.description.split(' ').next().unwrap_or(""),
            w.rule.protocol,
            security::ports(&w.rule),
            match w.rule.source.as_str() {
                crate::observed::SELF_SOURCE => "the nodes (this group)",
                other => other,
            }
        );
        if sg.ingress.contains(&w.rule) {
            ev.push(format!("  allowed: {what}"));
        } else {
            passed = false;
            ev.push(format!("  MISSING: {what} (the spec allows it)"));
        }
    }
    for r in &sg.ingress {
        if !wanted.iter().any(|w| &w.rule == r) {
            passed = false;
            ev.push(format!(
                "  NOT IN THE SPEC: {}/{} from {}",
                r.protocol,
                security::ports(r),
                r.source
            ));
        }
    }
    for n in &spec.nodes.nodes {
        let Some(i) = node_instance(observed, n) else {
            passed = false;
            ev.push(format!("{}: no instance", n.name));
            continue;
        };
        if i.security_group_ids != [sg.id.clone()] {
            passed = false;
            ev.push(format!(
                "{} ({}): in {} (expected only {})",
                n.name,
                i.id,
                if i.security_group_ids.is_empty() {
                    "no group".into()
                } else {
                    i.security_group_ids.join(", ")
                },
                sg.id
            ));
        }
    }
    if passed {
        ev.push(format!("every node is in {} and no other group", sg.id));
    }
    Check {
        name: name.into(),
        passed,
        evidence: ev,
    }
}

/// Every node answers metadata requests only with a session token (IMDSv2) and carries no IAM
/// instance profile (no AWS credentials on the nodes).
pub fn instance_metadata(spec: &Spec, observed: &Observed) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for n in &spec.nodes.nodes {
        let Some(i) = node_instance(observed, n) else {
            passed = false;
            ev.push(format!("{}: no instance", n.name));
            continue;
        };
        let tokens = i.http_tokens.as_deref().unwrap_or("unknown");
        let ok_tokens = tokens == "required";
        let profile = match &i.instance_profile {
            None => "no instance profile".to_string(),
            Some(arn) => format!("instance profile {arn} [expected none] WRONG"),
        };
        passed &= ok_tokens && i.instance_profile.is_none();
        ev.push(format!(
            "{} ({}): HttpTokens={tokens}{}, {profile}",
            n.name,
            i.id,
            if ok_tokens {
                ""
            } else {
                " [expected required: IMDSv2 only] WRONG"
            }
        ));
    }
    Check {
        name: "instance metadata".into(),
        passed,
        evidence: ev,
    }
}

/// A node's root volume, as the observation knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootVolume {
    pub node: String,
    pub instance: String,
    pub volume: String,
}

/// Each node's root volume, in the spec's order; for a node without an instance or a root
/// volume, why, for the evidence.
pub fn root_volumes(spec: &Spec, observed: &Observed) -> Vec<Result<RootVolume, String>> {
    spec.nodes
        .nodes
        .iter()
        .map(|n| {
            let Some(i) = node_instance(observed, n) else {
                return Err(format!("{}: no instance", n.name));
            };
            let root = i
                .root_device_name
                .as_ref()
                .and_then(|d| i.block_devices.get(d));
            match root {
                Some(v) => Ok(RootVolume {
                    node: n.name.clone(),
                    instance: i.id.clone(),
                    volume: v.clone(),
                }),
                None => Err(format!("{} ({}): no root volume attached", n.name, i.id)),
            }
        })
        .collect()
}

/// Every node has a root volume, encrypted when the spec asks for it. `described` is what
/// DescribeVolumes said of the volumes [`root_volumes`] found.
pub fn volumes_encrypted(
    spec: &Spec,
    roots: &[Result<RootVolume, String>],
    described: Result<Vec<VolumeFacts>, String>,
) -> Check {
    let mut passed = true;
    let mut ev = Vec::new();
    for why in roots.iter().filter_map(|r| r.as_ref().err()) {
        passed = false;
        ev.push(why.clone());
    }
    match described {
        Err(why) => {
            passed = false;
            ev.push(why);
        }
        Ok(volumes) => {
            for r in roots.iter().filter_map(|r| r.as_ref().ok()) {
                let (node, inst, vol) = (&r.node, &r.instance, &r.volume);
                let Some(v) = volumes.iter().find(|v| &v.id == vol) else {
                    passed = false;
                    ev.push(format!("{node} ({inst}): {vol} not found"));
                    continue;
                };
                if spec.nodes.root_volume.encrypted {
                    passed &= v.encrypted;
                }
                ev.push(format!(
                    "{node} ({inst}) {vol}: Encrypted={} KmsKeyId={}",
                    v.encrypted,
                    v.kms_key_id.as_deref().unwrap_or("-")
                ));
            }
        }
    }
    if !spec.nodes.root_volume.encrypted {
        ev.push("the spec does not ask for encryption".into());
    }
    Check {
        name: "root volumes encrypted".into(),
        passed,
        evidence: ev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::IngressRule;

    /// The reference spec's security group and instances as `apply` leaves them.
    fn applied(spec: &Spec) -> Observed {
        let sg = observed::SecurityGroup {
            id: "sg-1".into(),
            name: "prod-redis-redis".into(),
            vpc_id: "vpc-1".into(),
            ingress: security::ingress_rules(spec)
                .into_iter()
                .map(|r| r.rule)
                .collect(),
            tags: [(
                tags::ROLE.to_string(),
                tags::Role::SecurityGroup.as_str().to_string(),
            )]
            .into(),
        };
        let instances = spec
            .nodes
            .nodes
            .iter()
            .enumerate()
            .map(|(k, n)| observed::Instance {
                id: format!("i-{k}"),
                state: "running".into(),
                instance_type: "t3.micro".into(),
                image_id: "ami-1".into(),
                subnet_id: None,
                private_ip: Some(n.private_ip),
                public_ip: None,
                key_name: None,
                security_group_ids: vec!["sg-1".into()],
                root_device_name: None,
                block_devices: Default::default(),
                launch_time: None,
                http_tokens: Some("required".into()),
                instance_profile: None,
                tags: [(tags::NODE.to_string(), n.name.clone())].into(),
            })
            .collect();
        Observed {
            security_groups: vec![sg],
            instances,
            ..Default::default()
        }
    }

    #[test]
    fn security_group_is_exactly_the_specs() {
        let spec = crate::redis::test_spec::reference();
        let mut o = applied(&spec);
        let c = security_group(&spec, &o);
        assert!(c.passed, "{c:?}");
        assert!(
            c.evidence
                .iter()
                .any(|e| e.contains("allowed: ssh tcp/22 from 203.0.113.7/32")),
            "{c:?}"
        );
        assert!(
            c.evidence.last().unwrap().contains("every node is in sg-1"),
            "{c:?}"
        );

        // A rule added out of band, a rule removed, a node in a second group: each named.
        o.security_groups[0].ingress.retain(|r| r.from_port != 22);
        o.security_groups[0].ingress.push(IngressRule {
            protocol: "tcp".into(),
            from_port: 6379,
            to_port: 6379,
            source: "0.0.0.0/0".into(),
        });
        o.instances[1].security_group_ids.push("sg-2".into());
        let c = security_group(&spec, &o);
        assert!(!c.passed);
        let ev = c.evidence.join("\n");
        assert!(
            ev.contains("MISSING: ssh tcp/22 from 203.0.113.7/32"),
            "{ev}"
        );
        assert!(
            ev.contains("NOT IN THE SPEC: tcp/6379 from 0.0.0.0/0"),
            "{ev}"
        );
        assert!(
            ev.contains("(i-1): in sg-1, sg-2 (expected only sg-1)"),
            "{ev}"
        );

        // No group at all.
        o.security_groups.clear();
        let c = security_group(&spec, &o);
        assert!(!c.passed);
        assert!(c.evidence[0].contains("found 0"), "{c:?}");
    }

    #[test]
    fn instance_metadata_requires_imdsv2_and_no_profile() {
        let spec = crate::redis::test_spec::reference();
        let mut o = applied(&spec);
        let c = instance_metadata(&spec, &o);
        assert!(c.passed, "{c:?}");
        assert!(
            c.evidence[0].ends_with("(i-0): HttpTokens=required, no instance profile"),
            "{c:?}"
        );
        o.instances[0].http_tokens = Some("optional".into());
        o.instances[2].instance_profile = Some("arn:aws:iam::1:instance-profile/x".into());
        let c = instance_metadata(&spec, &o);
        assert!(!c.passed);
        assert!(
            c.evidence[0].contains("HttpTokens=optional [expected required: IMDSv2 only] WRONG"),
            "{c:?}"
        );
        assert!(
            c.evidence[2].contains(
                "instance profile arn:aws:iam::1:instance-profile/x [expected none] WRONG"
            ),
            "{c:?}"
        );
        o.instances.remove(1);
        assert!(instance_metadata(&spec, &o).evidence[1].ends_with(": no instance"));
    }

    #[test]
    fn root_volumes_are_encrypted_when_the_spec_asks() {
        let spec = crate::redis::test_spec::reference();
        let mut o = applied(&spec);
        for (k, i) in o.instances.iter_mut().enumerate() {
            i.root_device_name = Some("/dev/xvda".into());
            i.block_devices = [("/dev/xvda".to_string(), format!("vol-{k}"))].into();
        }
        o.instances[1].block_devices.clear();
        let roots = root_volumes(&spec, &o);
        assert_eq!(
            roots[1],
            Err("redis-node-1b (i-1): no root volume attached".into())
        );
        let facts = |k: usize, encrypted: bool| VolumeFacts {
            id: format!("vol-{k}"),
            encrypted,
            kms_key_id: encrypted.then(|| "arn:aws:kms:k".to_string()),
        };
        let c = volumes_encrypted(&spec, &roots, Ok(vec![facts(0, true), facts(2, false)]));
        assert!(!c.passed);
        assert_eq!(
            c.evidence,
            [
                "redis-node-1b (i-1): no root volume attached",
                "redis-node-1a (i-0) vol-0: Encrypted=true KmsKeyId=arn:aws:kms:k",
                "redis-node-1c (i-2) vol-2: Encrypted=false KmsKeyId=-",
            ]
        );
        let c = volumes_encrypted(&spec, &roots[..1], Ok(vec![]));
        assert_eq!(c.evidence, ["redis-node-1a (i-0): vol-0 not found"]);
    }
}
