//! The public addresses the front hands out from [`PUBLIC_RANGE`](super::PUBLIC_RANGE): an
//! instance's public IP, new at every boot and gone when it stops, and the Elastic IPs
//! (AllocateAddress).

use super::view::View;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The public IPs the front hands out: a new one at every boot, never the one just released
/// while another is free; and the Elastic IPs (AllocateAddress), from the same range.
#[derive(Debug, Default)]
pub struct PublicIps {
    /// instance id → its address now
    pub held: BTreeMap<String, Ipv4Addr>,
    /// The Elastic IPs allocated (moto's, and one being allocated).
    pub elastic: std::collections::BTreeSet<Ipv4Addr>,
    next: u32,
}

impl PublicIps {
    pub fn clear(&mut self) {
        *self = PublicIps::default();
    }

    /// The next free address of [`PUBLIC_RANGE`](super::PUBLIC_RANGE) (.10 to .254), round robin.
    fn allocate(&mut self) -> Option<Ipv4Addr> {
        const FIRST: u32 = 10;
        const COUNT: u32 = 245;
        for _ in 0..COUNT {
            let ip = Ipv4Addr::new(198, 51, 100, (FIRST + self.next % COUNT) as u8);
            self.next = self.next.wrapping_add(1);
            if !self.held.values().any(|h| *h == ip) && !self.elastic.contains(&ip) {
                return Some(ip);
            }
        }
        None
    }

    /// An address for a new Elastic IP (AllocateAddress gives it to moto), held from now on.
    pub fn allocate_elastic(&mut self) -> Option<Ipv4Addr> {
        let ip = self.allocate()?;
        self.elastic.insert(ip);
        Some(ip)
    }

    /// Gives every running instance moto gave a public address one of ours (if it has none),
    /// and takes it back from every other; the Elastic IPs are moto's. Returns what changed,
    /// for the log.
    pub fn settle(&mut self, view: &View, running: &[String]) -> Vec<String> {
        let mut changes = Vec::new();
        self.elastic = view.elastic_ips.iter().copied().collect();
        let wanted: Vec<&str> = running
            .iter()
            .filter(|id| view.instance(id).is_some_and(|i| i.has_public_ip))
            .map(String::as_str)
            .collect();
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|id| !wanted.contains(&id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(ip) = self.held.remove(&id) {
                changes.push(format!("{id}: public IP {ip} released"));
            }
        }
        for id in wanted {
            if !self.held.contains_key(id)
                && let Some(ip) = self.allocate()
            {
                self.held.insert(id.to_string(), ip);
                changes.push(format!("{id}: public IP {ip}"));
            }
        }
        changes
    }

    /// How an answer shows an instance's public IP (see `xml::BootView`).
    pub fn shown(&self, id: &str) -> Option<Option<Ipv4Addr>> {
        Some(self.held.get(id).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::super::PUBLIC_RANGE;
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn elastic_ips_come_from_the_public_range_and_are_not_handed_to_instances() {
        let v = cluster();
        let mut ips = PublicIps::default();
        let eip = ips.allocate_elastic().unwrap();
        assert!(crate::net::contains(PUBLIC_RANGE, eip));
        let mut v2 = v.clone();
        v2.elastic_ips = vec![eip];
        for _ in 0..300 {
            ips.settle(&v2, &["i-a".into()]);
            assert_ne!(ips.held["i-a"], eip);
            ips.settle(&v2, &[]);
        }
        // Released in moto: free again.
        ips.settle(&v, &[]);
        assert!(ips.elastic.is_empty());
    }

    #[test]
    fn a_public_ip_is_new_at_every_boot_and_gone_when_stopped() {
        let v = cluster();
        let mut ips = PublicIps::default();
        ips.settle(&v, &["i-a".into(), "i-b".into(), "i-x".into()]);
        assert_eq!(ips.held.len(), 2, "i-x was launched without a public IP");
        let first = ips.held["i-a"];
        ips.settle(&v, &["i-b".into()]);
        assert_eq!(ips.shown("i-a"), Some(None), "stopped: no public IP");
        ips.settle(&v, &["i-a".into(), "i-b".into()]);
        assert_ne!(ips.held["i-a"], first, "a start gives a new address");
        assert_ne!(ips.held["i-a"], ips.held["i-b"]);
    }
}
