//! The simulated EC2 resources that take more than one line: instances launched and
//! terminated with their root volumes, the root volume encryption swap, tags of any resource.

use std::net::Ipv4Addr;

use redisctl::observed::{self, ClusterView, Tags, tags};
use redisctl::plan;

use super::Sim;

impl Sim {
    /// The encryption swap as the executor carries it out, from whatever stage the instance's
    /// tag records: the node ends on an encrypted copy of its root, the plaintext is gone (or
    /// kept, tagged), the swap's tags are removed.
    pub(super) fn swap_root(&mut self, s: &plan::SwapRootVolume) -> String {
        let inst_id = self.resolve(&s.instance);
        let inst = self
            .o
            .instances
            .iter()
            .find(|i| i.id == inst_id)
            .unwrap()
            .clone();
        let stage = inst.tags.get(tags::STAGE).cloned();
        let old = inst
            .tags
            .get(tags::SWAP_OLD_VOLUME)
            .cloned()
            .unwrap_or_else(|| inst.block_devices[&s.device].clone());
        let attached = inst.block_devices.get(&s.device).cloned();
        // From stage 4 on the new volume is attached already.
        let new = match inst.tags.get(tags::SWAP_NEW_VOLUME) {
            Some(v) if stage.as_deref() >= Some("swap:3") => v.clone(),
            _ => {
                let src = self.o.volumes.iter().find(|v| v.id == old).unwrap().clone();
                // The plaintext snapshot of the old root, which the new volume is made from.
                let snap = self.id("snap");
                self.o.snapshots.push(observed::Snapshot {
                    id: snap.clone(),
                    volume_id: Some(old.clone()),
                    state: "completed".into(),
                    encrypted: false,
                    tags: s.snapshot_tags.clone(),
                });
                let id = self.id("vol");
                self.o.volumes.push(observed::Volume {
                    id: id.clone(),
                    encrypted: true,
                    kms_key_id: Some(s.kms_key.clone()),
                    az: s.az.clone(),
                    state: "available".into(),
                    snapshot_id: Some(snap),
                    attachment: None,
                    tags: s.volume_tags.clone(),
                    ..src
                });
                id
            }
        };
        if attached.as_deref() != Some(new.as_str()) {
            for v in &mut self.o.volumes {
                if v.id == old {
                    v.attachment = None;
                    v.state = "available".into();
                }
                if v.id == new {
                    v.attachment = Some((inst_id.clone(), s.device.clone()));
                    v.state = "in-use".into();
                }
            }
        }
        if s.keep_old {
            for v in self.o.volumes.iter_mut().filter(|v| v.id == old) {
                v.tags
                    .insert(tags::KEPT_FOR_ROLLBACK.into(), s.node.clone());
            }
            for x in self
                .o
                .snapshots
                .iter_mut()
                .filter(|x| x.volume_id.as_deref() == Some(old.as_str()))
            {
                x.tags
                    .insert(tags::KEPT_FOR_ROLLBACK.into(), s.node.clone());
            }
        } else {
            self.o.volumes.retain(|v| v.id != old);
            self.o
                .snapshots
                .retain(|x| x.volume_id.as_deref() != Some(old.as_str()));
        }
        // Verified: the node is back in a healthy cluster.
        let n = self.spec.nodes.nodes.len() as u32;
        let size = self.spec.nodes.masters;
        let f = self.facts(&s.node);
        f.service_active = true;
        let kept = f.cluster.take().unwrap_or_default();
        f.cluster = Some(ClusterView {
            state: "ok".into(),
            slots_assigned: 16384,
            known_nodes: n,
            size,
            ..kept
        });
        let i = self
            .o
            .instances
            .iter_mut()
            .find(|i| i.id == inst_id)
            .unwrap();
        i.block_devices.insert(s.device.clone(), new.clone());
        i.state = "running".into();
        i.tags
            .retain(|k, _| k != tags::STAGE && !k.starts_with("redisctl:swap-"));
        new
    }

    pub(super) fn tags_of(&mut self, id: &str) -> &mut Tags {
        let o = &mut self.o;
        if let Some(x) = o.vpcs.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.subnets.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.internet_gateways.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.route_tables.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.security_groups.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.instances.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.nat_gateways.iter_mut().find(|x| x.id == id) {
            return &mut x.tags;
        }
        if let Some(x) = o.addresses.iter_mut().find(|x| x.allocation_id == id) {
            return &mut x.tags;
        }
        panic!("no resource {id}")
    }

    /// The id a default route's target stands for.
    pub(super) fn route_target(&self, t: &plan::RouteTarget) -> String {
        match t {
            plan::RouteTarget::InternetGateway(r) | plan::RouteTarget::NatGateway(r) => {
                self.resolve(r)
            }
        }
    }

    pub(super) fn run(&mut self, r: &plan::RunInstance) -> String {
        assert!(
            !self
                .o
                .instances
                .iter()
                .any(|i| i.private_ip == Some(r.private_ip)),
            "{} is still in use when {} is launched",
            r.private_ip,
            r.node
        );
        let id = self.id("i");
        let vol = self.id("vol");
        let subnet = self.resolve(&r.subnet);
        let sg = self.resolve(&r.security_group);
        let az = self
            .o
            .subnets
            .iter()
            .find(|s| s.id == subnet)
            .unwrap()
            .az
            .clone();
        self.o.volumes.push(observed::Volume {
            id: vol.clone(),
            size_gib: r.volume_size_gib as i32,
            volume_type: r.volume_type.clone(),
            encrypted: r.encrypted,
            kms_key_id: r.kms_key.clone(),
            az,
            state: "in-use".into(),
            snapshot_id: None,
            attachment: Some((id.clone(), r.root_device.clone())),
            tags: r.volume_tags.clone(),
        });
        self.o.instances.push(observed::Instance {
            id: id.clone(),
            state: "running".into(),
            instance_type: r.instance_type.clone(),
            image_id: r.image_id.clone(),
            subnet_id: Some(subnet),
            private_ip: Some(r.private_ip),
            public_ip: Some(Ipv4Addr::new(198, 18, 0, self.next as u8)),
            key_name: Some(r.key_name.clone()),
            security_group_ids: vec![sg],
            root_device_name: Some(r.root_device.clone()),
            block_devices: [(r.root_device.clone(), vol)].into(),
            launch_time: None,
            http_tokens: Some("required".into()),
            instance_profile: None,
            tags: r.tags.clone(),
        });
        id
    }

    pub(super) fn terminate(&mut self, id: &str) {
        // An unreachable node's host goes with its instance: a new one is a fresh host.
        if let Some(node) = self
            .o
            .instances
            .iter()
            .find(|i| i.id == id)
            .and_then(|i| i.tags.get(redisctl::observed::tags::NODE).cloned())
            && matches!(
                self.o.nodes.get(&node),
                Some(redisctl::observed::NodeObservation::Unreachable { .. })
            )
        {
            self.o.nodes.remove(&node);
        }
        self.o.instances.retain(|i| i.id != id);
        self.o
            .volumes
            .retain(|v| v.attachment.as_ref().map(|a| a.0.as_str()) != Some(id));
    }
}
