//! Phase 2, the instances (with encryption at launch): the key pair by name and the nodes'
//! instances by their `redisctl:node` tag, against the spec. An instance is created when its
//! node has none, replaced when it must move to another subnet or address, updated in place
//! otherwise; differences redisctl does not act on (the AMI of a running node) are notes.

use std::collections::BTreeSet;

use super::builder::{Builder, Leaving, role_is, root_volume};
use super::model::*;
use super::naming;
use super::network::Network;
use crate::observed;
use crate::observed::tags::{self, Role};
use crate::spec::{Ami, EncryptionStrategy, Node, UBUNTU_2404};

/// What every node's instance shares, once decided.
struct Launch {
    image_id: String,
    root_device: String,
    /// Instances of nodes no longer in the spec: terminated before any node is launched.
    deletes: Vec<String>,
}

pub(super) fn plan_instances(b: &mut Builder<'_>, net: &Network) {
    key_pair(b);
    let obs = b.observed;
    strangers(b);
    let node_instances: Vec<&observed::Instance> = obs
        .instances
        .iter()
        .filter(|i| role_is(&i.tags, Role::Node))
        .collect();
    let deletes = delete_unwanted(b, &node_instances);
    let (image_id, root_device) = image_or_blocker(b, &node_instances);
    let launch = Launch {
        image_id,
        root_device,
        deletes,
    };
    let spec = b.spec;
    for n in &spec.nodes.nodes {
        instance(b, n, net, &node_instances, &launch);
    }
}

/// Instances tagged for the cluster outside its network are not nodes: named, left alone.
fn strangers(b: &mut Builder<'_>) {
    let obs = b.observed;
    for i in &obs.strangers {
        let claim = i
            .tags
            .get(tags::NODE)
            .map_or(String::new(), |n| format!(" as node {n}"));
        b.note(
            NoteLevel::Warning,
            &format!("instance.{}", i.id),
            format!(
                "instance {} is tagged for cluster {}{claim} but is not in the cluster's subnets and security group ({}): it is not the cluster's, and redisctl never connects to, changes or deletes it; find out who made it, and remove its redisctl:cluster tag when it is accounted for",
                i.id,
                b.spec.cluster.name,
                i.subnet_id.as_deref().unwrap_or("no subnet")
            ),
        );
    }
}

fn key_pair(b: &mut Builder<'_>) {
    let spec = b.spec;
    let obs = b.observed;
    let key_name = &spec.ssh.key_name;
    let kps: Vec<&observed::KeyPair> = obs
        .key_pairs
        .iter()
        .filter(|k| &k.name == key_name)
        .collect();
    let kp = b.single("key_pair", kps, |k| &k.id);
    let kp_tags = b.tags(Role::KeyPair, "key", None);
    let local = obs.local_public_key.as_deref();
    // The private key is made on the operator's machine first when there is none.
    let ensure_key = Op::Local(LocalOp::EnsureSshKey {
        private_key: spec.ssh.private_key.display().to_string(),
        key_pair: key_name.clone(),
    });
    let import = Op::Ec2(Ec2Op::ImportKeyPair {
        name: key_name.clone(),
        private_key: spec.ssh.private_key.display().to_string(),
        tags: kp_tags,
    });
    // A key pair of the spec's name that redisctl did not make for this cluster (another
    // team's, a hand-made one) is never replaced or deleted: the name is taken.
    let foreign = kp.filter(|k| k.tags.get(tags::CLUSTER) != Some(&spec.cluster.name));
    match (kp, local) {
        (Some(k), Some(local))
            if foreign.is_some()
                && !k
                    .public_key
                    .as_deref()
                    .is_some_and(|p| naming::same_public_key(p, local)) =>
        {
            b.note(
                NoteLevel::Blocker,
                "key_pair",
                format!(
                    "key pair {key_name} ({}) holds another public key than {} and was not made by redisctl for cluster {} (it has no redisctl:cluster={} tag), so redisctl does not replace it: choose another ssh.key_name, or point ssh.private_key at the key pair's own private key if it is yours",
                    k.id,
                    spec.ssh.private_key.display(),
                    spec.cluster.name,
                    spec.cluster.name
                ),
            );
        }
        (None, _) => b.push(
            Step::new(
                "key_pair",
                Action::Create,
                Phase::Instances,
                match local {
                    Some(_) => format!("no key pair named {key_name}"),
                    None => format!(
                        "no key pair named {key_name}; a new ed25519 key will be generated at {}",
                        spec.ssh.private_key.display()
                    ),
                },
            )
            .changes(vec![
                Change::create("name", key_name),
                match local {
                    Some(k) => Change::create("public_key", naming::short_key(k)),
                    None => Change::after_apply("public_key"),
                },
            ])
            .ops(vec![ensure_key, import]),
        ),
        (Some(k), None) if foreign.is_some() => b.note(
            NoteLevel::Blocker,
            "key_pair",
            format!(
                "key pair {key_name} ({}) exists in AWS and was not made by redisctl for cluster {}: choose another ssh.key_name (redisctl then makes its own key), or point ssh.private_key at that key pair's private key if it is yours",
                k.id, spec.cluster.name
            ),
        ),
        (Some(k), None) => b.note(
            NoteLevel::Blocker,
            "key_pair",
            format!(
                "key pair {key_name} exists in AWS but its private key {} is missing here: nodes cannot be reached over SSH. Restore the key file, or point ssh.private_key at it",
                spec.ssh.private_key.display()
            ) + &format!(" ({})", k.id),
        ),
        (Some(k), Some(local)) => {
            let same = k
                .public_key
                .as_deref()
                .is_some_and(|p| naming::same_public_key(p, local));
            if !same {
                let uses: Vec<&str> = obs
                    .instances
                    .iter()
                    .filter(|i| i.key_name.as_deref() == Some(key_name.as_str()))
                    .map(|i| i.id.as_str())
                    .collect();
                // (During an SSH key rotation the nodes are given the new key over SSH.)
                if !uses.is_empty() && obs.local.ssh_previous_public_key.is_none() {
                    b.note(
                        NoteLevel::Warning,
                        "key_pair",
                        format!("the key pair is replaced, but running nodes ({}) keep the key they booted with", uses.join(", ")),
                    );
                }
                b.push(
                    Step::new(
                        "key_pair",
                        Action::Replace,
                        Phase::Instances,
                        format!(
                            "the public key in AWS is not the one of {}",
                            spec.ssh.private_key.display()
                        ),
                    )
                    .changes(vec![
                        Change::update(
                            "public_key",
                            k.public_key
                                .as_deref()
                                .map(naming::short_key)
                                .unwrap_or_else(|| "(unknown)".into()),
                            naming::short_key(local),
                        )
                        .forcing(),
                    ])
                    .unchanged(1)
                    .ops(vec![
                        Op::Ec2(Ec2Op::DeleteKeyPair {
                            name: key_name.clone(),
                        }),
                        ensure_key,
                        import,
                    ]),
                );
            }
        }
    }
}

/// Nodes that are no longer in the spec go first: their addresses may be reused. Returns the
/// addresses the launches wait for.
fn delete_unwanted(b: &mut Builder<'_>, node_instances: &[&observed::Instance]) -> Vec<String> {
    let spec = b.spec;
    let wanted: BTreeSet<&str> = spec.nodes.nodes.iter().map(|n| n.name.as_str()).collect();
    let members = super::nodes::topology::member_ips(b.observed);
    let mut deletes = Vec::new();
    for i in node_instances {
        let name = i.tags.get(tags::NODE).map(String::as_str).unwrap_or("?");
        if !wanted.contains(name) {
            let address = format!("node.{name}");
            // A member of the running cluster leaves it first (its slots moved to the others,
            // forgotten by every node): terminated in phase 7 (nodes/topology.rs).
            if let Some(ip) = i.private_ip.filter(|ip| members.contains(ip)) {
                if let Some(n) = spec.nodes.nodes.iter().find(|n| n.private_ip == ip) {
                    b.note(
                        NoteLevel::Blocker,
                        &format!("node.{}", n.name),
                        format!(
                            "{} would take {ip}, the address of {name}, which the spec no longer has but is still a member of the cluster: remove {name} first (apply with neither), then add {}",
                            n.name, n.name
                        ),
                    );
                }
                b.leaving.push(Leaving {
                    name: name.to_string(),
                    instance: i.id.clone(),
                    ip,
                });
                continue;
            }
            deletes.push(address.clone());
            b.push(
                Step::new(
                    if b.planned(&address) {
                        format!("{address}[{}]", i.id)
                    } else {
                        address
                    },
                    Action::Delete,
                    Phase::Instances,
                    "node is not in the spec",
                )
                .changes(vec![
                    Change::delete("instance_id", &i.id),
                    Change::delete(
                        "private_ip",
                        i.private_ip.map(|x| x.to_string()).unwrap_or_default(),
                    ),
                ])
                .destroying_data()
                .op(Op::Ec2(Ec2Op::TerminateInstance {
                    instance: i.id.clone(),
                })),
            );
        }
    }
    deletes
}

/// The newest Ubuntu 24.04 image, or the spec's explicit AMI, with its root device name.
fn image(b: &Builder<'_>) -> Option<(String, String)> {
    match &b.spec.nodes.ami {
        Ami::Id(id) => Some((
            id.clone(),
            b.observed
                .images
                .iter()
                .find(|i| &i.id == id)
                .map(|i| i.root_device_name.clone())
                .unwrap_or_else(|| "/dev/sda1".into()),
        )),
        Ami::Ubuntu2404 => b
            .observed
            .images
            .iter()
            .filter(|i| {
                i.architecture == "x86_64" && i.name.contains("ubuntu-noble-24.04-amd64-server")
            })
            .max_by(|x, y| {
                x.creation_date
                    .cmp(&y.creation_date)
                    .then(x.name.cmp(&y.name))
            })
            .map(|i| (i.id.clone(), i.root_device_name.clone())),
    }
}

/// The image and root device name for new instances; a blocker when a node needs one and none
/// is found.
fn image_or_blocker(
    b: &mut Builder<'_>,
    node_instances: &[&observed::Instance],
) -> (String, String) {
    let spec = b.spec;
    let img = image(b);
    let needs_image = spec.nodes.nodes.iter().any(|n| {
        !node_instances
            .iter()
            .any(|i| i.tags.get(tags::NODE) == Some(&n.name))
    });
    if needs_image && img.is_none() {
        b.note(
            NoteLevel::Blocker,
            "nodes.ami",
            match &spec.nodes.ami {
                Ami::Ubuntu2404 => format!(
                    "no {UBUNTU_2404} image found in {} (owner {}, name {}): set nodes.ami to an explicit ami- id",
                    spec.cluster.region,
                    crate::spec::CANONICAL_OWNER,
                    crate::spec::UBUNTU_2404_NAME_FILTER
                ),
                Ami::Id(id) => format!("image {id} does not exist in {}", spec.cluster.region),
            },
        );
    }
    img.unwrap_or_else(|| ("(unresolved)".into(), "/dev/sda1".into()))
}

/// One node's instance: created when it has none, otherwise compared with the spec.
fn instance(
    b: &mut Builder<'_>,
    n: &Node,
    net: &Network,
    node_instances: &[&observed::Instance],
    launch: &Launch,
) {
    let spec = b.spec;
    let rv = &spec.nodes.root_volume;
    let encrypt_at_launch = rv.encrypted && rv.strategy == EncryptionStrategy::AtLaunch;
    let address = format!("node.{}", n.name);
    let subnet_addr = format!("subnet.{}", n.subnet);
    let subnet_existing = net.subnet_ids.get(&n.subnet).cloned().flatten();
    let subnet_ref = b.reference(&subnet_addr, subnet_existing.as_deref());
    let run = RunInstance {
        node: n.name.clone(),
        image_id: launch.image_id.clone(),
        instance_type: spec.nodes.instance_type.clone(),
        subnet: subnet_ref,
        security_group: net.security_group.clone(),
        key_name: spec.ssh.key_name.clone(),
        private_ip: n.private_ip,
        root_device: launch.root_device.clone(),
        volume_size_gib: rv.size_gib,
        volume_type: rv.volume_type.clone(),
        encrypted: encrypt_at_launch,
        kms_key: encrypt_at_launch.then(|| rv.kms_key.clone()),
        tags: b.tags(Role::Node, &n.name, Some(&n.name)),
        volume_tags: b.tags(Role::Volume, &format!("{}-root", n.name), Some(&n.name)),
    };
    let mut deps = b.dep(&subnet_addr);
    deps.extend(b.dep("sg"));
    deps.extend(b.dep("key_pair"));
    deps.extend(b.dep(&format!("route_table.association[{}]", n.subnet)));
    deps.extend(launch.deletes.iter().cloned());
    let mine: Vec<&observed::Instance> = node_instances
        .iter()
        .copied()
        .filter(|i| i.tags.get(tags::NODE) == Some(&n.name))
        .collect();
    if mine.len() > 1 {
        b.note(
            NoteLevel::Blocker,
            &address,
            format!(
                "{} instances in the cluster's network claim to be node {} ({}): redisctl acts on and connects to none of them; terminate the one(s) redisctl did not make (the host keys it pinned are in {}/known_hosts)",
                mine.len(),
                n.name,
                mine.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", "),
                spec.cluster.state_dir.display()
            ),
        );
    }
    let Some(inst) = mine.first().copied() else {
        b.push(
            Step::new(
                address,
                Action::Create,
                Phase::Instances,
                "no instance for this node",
            )
            .changes(vec![
                Change::create("instance_type", &spec.nodes.instance_type),
                Change::create("ami", &launch.image_id),
                Change::create("subnet", &n.subnet),
                Change::create("availability_zone", &n.az),
                Change::create("private_ip", n.private_ip.to_string()),
                Change::create("key_name", &spec.ssh.key_name),
                Change::create("root_volume.size_gib", rv.size_gib.to_string()),
                Change::create("root_volume.type", &rv.volume_type),
                Change::create("root_volume.encrypted", encrypt_at_launch.to_string()),
                Change::after_apply("instance_id"),
            ])
            .depends_on(deps)
            .op(Op::Ec2(Ec2Op::RunInstance(Box::new(run)))),
        );
        return;
    };
    existing_instance(b, n, inst, run, deps);
}

/// A running node launched without a public IP where nodes are reached by one
/// (`network.egress = "public_ip"`), that the node runtime could not reach (in apply, after
/// waiting for its address) and that was never reached (no `redisctl:host-key` tag) is
/// replaced: EC2 gives an instance a public IP only at launch, so it would stay out of reach
/// for good, and there is nothing on it to keep.
pub(super) fn never_reachable(b: &Builder<'_>, node: &str, inst: &observed::Instance) -> bool {
    b.spec.network.egress == crate::spec::types::Egress::PublicIp
        && inst.state == "running"
        && inst.public_ip.is_none()
        && !inst.tags.contains_key(tags::HOST_KEY)
        && matches!(
            b.observed.nodes.get(node),
            Some(observed::NodeObservation::Unreachable {
                host_key_changed: false,
                ..
            })
        )
}

/// An existing instance: replaced when it is in the wrong subnet or has the wrong address,
/// otherwise brought to the spec in place.
fn existing_instance(
    b: &mut Builder<'_>,
    n: &Node,
    inst: &observed::Instance,
    run: RunInstance,
    deps: Vec<String>,
) {
    let spec = b.spec;
    let obs = b.observed;
    let rv = &spec.nodes.root_volume;
    let address = format!("node.{}", n.name);
    let image_id = run.image_id.as_str();
    let mut changes = Vec::new();
    let mut unchanged = 0;
    let mut replace = false;
    let subnet_now = inst
        .subnet_id
        .as_ref()
        .and_then(|sid| obs.subnets.iter().find(|s| &s.id == sid))
        .and_then(|s| {
            spec.network
                .subnets
                .iter()
                .find(|x| x.cidr.to_string() == s.cidr)
        })
        .map(|s| s.name.clone());
    if subnet_now.as_deref() != Some(n.subnet.as_str()) {
        changes.push(
            Change::update(
                "subnet",
                subnet_now.unwrap_or_else(|| inst.subnet_id.clone().unwrap_or_default()),
                &n.subnet,
            )
            .forcing(),
        );
        replace = true;
    } else {
        unchanged += 1;
    }
    if inst.private_ip != Some(n.private_ip) {
        changes.push(
            Change::update(
                "private_ip",
                inst.private_ip.map(|x| x.to_string()).unwrap_or_default(),
                n.private_ip.to_string(),
            )
            .forcing(),
        );
        replace = true;
    } else {
        unchanged += 1;
    }
    if !matches!(image_id, "(unresolved)") && inst.image_id != image_id {
        changes.push(
            Change::update("ami", &inst.image_id, image_id)
                .ignored("the AMI of an existing node is never a reason to replace it"),
        );
    } else {
        unchanged += 1;
    }
    // A replacement: in the wrong subnet or at the wrong address (its data goes), or never
    // reachable and never reached (nothing on it to keep).
    let unreachable = !replace && never_reachable(b, &n.name, inst);
    if replace || unreachable {
        let mut c = changes;
        let reason = if unreachable {
            c.push(Change::update("public_ip", "none", "(known after apply)").forcing());
            "the instance was launched without a public IP (the subnet's MapPublicIpOnLaunch was not in effect at its launch), and EC2 never gives it one later: it cannot be reached. It never was (no host key pinned), so it holds nothing of the cluster's"
        } else {
            "a node cannot move to another subnet or address in place"
        };
        c.push(Change::after_apply("instance_id"));
        let mut step = Step::new(address, Action::Replace, Phase::Instances, reason)
            .changes(c)
            .unchanged(unchanged)
            .depends_on(deps);
        if replace {
            step = step.destroying_data();
        }
        b.push(step.op(Op::Ec2(Ec2Op::ReplaceInstance {
            terminate: inst.id.clone(),
            run: Box::new(run),
        })));
        return;
    }
    let mut ops = Vec::new();
    if inst.instance_type != spec.nodes.instance_type {
        let running = inst.state == "running";
        changes.push(Change::update(
            "instance_type",
            &inst.instance_type,
            &spec.nodes.instance_type,
        ));
        ops.push(Op::Ec2(Ec2Op::ModifyInstanceType {
            instance: inst.id.clone(),
            instance_type: spec.nodes.instance_type.clone(),
            restart: running,
        }));
        if running {
            b.note(
                NoteLevel::Warning,
                &address,
                "changing the instance type stops and starts the node: it is unavailable meanwhile"
                    .into(),
            );
        }
    } else {
        unchanged += 1;
    }
    match inst.http_tokens.as_deref() {
        Some(t) if t != "required" => {
            changes.push(Change::update(
                "metadata_options.http_tokens",
                t,
                "required",
            ));
            ops.push(Op::Ec2(Ec2Op::RequireImdsV2 {
                instance: inst.id.clone(),
            }));
        }
        _ => unchanged += 1,
    }
    match inst.state.as_str() {
        "running" | "pending" => unchanged += 1,
        // A root volume swap in flight stopped it; the swap starts it again.
        "stopped" if stage_of(&inst.tags).is_some() => unchanged += 1,
        "stopped" => {
            changes.push(Change::update("state", "stopped", "running"));
            ops.push(Op::Ec2(Ec2Op::StartInstance {
                instance: inst.id.clone(),
            }));
        }
        other => b.note(
            NoteLevel::Warning,
            &address,
            format!(
                "instance {} is {other}; plan again once it has settled",
                inst.id
            ),
        ),
    }
    if inst.key_name.as_deref() != Some(spec.ssh.key_name.as_str()) {
        changes.push(
            Change::update(
                "key_name",
                inst.key_name.clone().unwrap_or_default(),
                &spec.ssh.key_name,
            )
            .ignored("the key pair is only used at first boot"),
        );
    }
    if let Some(root) = root_volume(obs, inst) {
        if i64::from(root.size_gib) < i64::from(rv.size_gib) {
            changes.push(
                Change::update(
                    "root_volume.size_gib",
                    root.size_gib.to_string(),
                    rv.size_gib.to_string(),
                )
                .ignored("resizing a root volume is not supported yet"),
            );
        } else {
            unchanged += 1;
        }
        // Encryption is phase 8's (the root volume swap), not the instance's.
        unchanged += 1;
    }
    if let Some((c, op)) = b.set_tags_op(&inst.id, &inst.tags, &run.tags) {
        changes.extend(c);
        ops.push(op);
    }
    let changes = notes_for_ignored(b, &address, changes);
    if !ops.is_empty() {
        let reason = if matches!(&ops[..], [Op::Ec2(Ec2Op::RequireImdsV2 { .. })]) {
            "IMDSv1 was allowed out of band; every node requires IMDSv2 session tokens"
        } else {
            "the instance differs from the spec"
        };
        b.push(
            Step::new(address, Action::Update, Phase::Instances, reason)
                .changes(changes)
                .unchanged(unchanged)
                .depends_on(deps)
                .ops(ops),
        );
    }
}

/// Differences redisctl does not act on are told, not planned: a plan of only those must still
/// be empty. Returns the changes that are acted on.
fn notes_for_ignored(b: &mut Builder<'_>, address: &str, changes: Vec<Change>) -> Vec<Change> {
    let (ignored, changes): (Vec<Change>, Vec<Change>) = changes
        .into_iter()
        .partition(|c| c.ignored_because.is_some());
    for c in ignored {
        b.note(
            NoteLevel::Info,
            address,
            format!(
                "{}: {} -> {} (not acted on: {})",
                c.attribute,
                c.before.map(|v| v.to_string()).unwrap_or_default(),
                c.after.map(|v| v.to_string()).unwrap_or_default(),
                c.ignored_because.unwrap_or_default()
            ),
        );
    }
    changes
}
