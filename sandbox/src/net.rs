//! Network namespaces, the VPC bridge and the root-namespace blackhole routes.
//!
//! The operator namespace has a loopback and the bridge, and no link to the root namespace at
//! all, so nothing in it (moto, the front, redisctl, the hosts behind the bridge) can reach
//! anything off the machine. Each host's namespace has one veth into the bridge, holding the
//! instance's private IP with a default route via its subnet's gateway (subnet base + 1, which
//! the bridge holds), so hosts in different subnets reach each other through the operator
//! namespace, as through the VPC router.

use crate::proc::{run, run_quiet};
use crate::{BRIDGE, HOST_NETNS_PREFIX, OPERATOR_NETNS};
use anyhow::{Context, Result, bail};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Ranges blackholed in the root namespace (if the machine itself does not use them, nor its
/// resolver): the reference VPC and moto's default VPC. Not all of 10.0.0.0/8: machines like
/// this one have their DNS resolver there, and a blackhole over it breaks every name lookup
/// (cargo, apt, pip) while the sandbox is up.
pub const BLACKHOLES: &[&str] = &["10.0.0.0/16", "172.31.0.0/16"];

/// The IPv4 nameservers of /etc/resolv.conf.
fn nameservers() -> Vec<Ipv4Addr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// The operator's address on the emulated internet (inside the reference spec's `ssh_cidrs`,
/// `203.0.113.7/32`, a documentation range): what it sends into the VPC leaves from here.
pub const OPERATOR_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
/// The distribution mirror's stand-in on the emulated internet (TEST-NET-1, a documentation
/// address, on the operator namespace's loopback): the front serves the base's apt archive
/// here over HTTP ([`ARCHIVE_URL`]). Hosts reach it only as EC2 instances reach the internet.
pub const ARCHIVE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
/// The hosts' only apt source (written into the base by `sandbox/base/customize.sh`).
pub const ARCHIVE_URL: &str = "http://192.0.2.80/debian";
/// Where instances' public IPs come from (TEST-NET-2, a documentation range).
pub const PUBLIC_RANGE: &str = "198.51.100.0/24";

/// The VPC router's MAC address (locally administered).
pub const BRIDGE_MAC: &str = "02:72:73:62:78:01";

pub fn netns_path(name: &str) -> String {
    format!("/run/netns/{name}")
}

pub fn exists(name: &str) -> bool {
    Path::new(&netns_path(name)).exists()
}

/// Parses `a.b.c.d/len`.
pub fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let (ip, len) = cidr
        .split_once('/')
        .with_context(|| format!("not a CIDR block: {cidr}"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .with_context(|| format!("not an IPv4 CIDR block: {cidr}"))?;
    let len: u8 = len
        .parse()
        .with_context(|| format!("bad prefix length in {cidr}"))?;
    if len > 32 {
        bail!("bad prefix length in {cidr}");
    }
    Ok((ip, len))
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

pub fn contains(cidr: &str, ip: Ipv4Addr) -> bool {
    parse_cidr(cidr).is_ok_and(|(net, len)| u32::from(net) & mask(len) == u32::from(ip) & mask(len))
}

/// The address AWS reserves for the subnet's router: base + 1.
pub fn gateway(cidr: &str) -> Result<Ipv4Addr> {
    let (net, len) = parse_cidr(cidr)?;
    Ok(Ipv4Addr::from((u32::from(net) & mask(len)) + 1))
}

/// The host namespace name for an instance.
pub fn host_netns(instance_id: &str) -> String {
    format!("{HOST_NETNS_PREFIX}{instance_id}")
}

/// The bridge-side veth name for an instance (interface names are at most 15 bytes).
pub fn host_veth(instance_id: &str) -> String {
    let tail: String = instance_id
        .chars()
        .rev()
        .take(10)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("rsv{tail}")
}

/// Runs `f` with this thread switched into the operator network namespace.
pub fn enter_operator_netns() -> Result<()> {
    let f = std::fs::File::open(netns_path(OPERATOR_NETNS)).with_context(|| {
        format!(
            "the operator network namespace {OPERATOR_NETNS} does not exist (is the sandbox up?)"
        )
    })?;
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "cannot enter the operator network namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Creates the operator namespace and its bridge (idempotent).
pub fn ensure_operator() -> Result<()> {
    if !exists(OPERATOR_NETNS) {
        run("ip", &["netns", "add", OPERATOR_NETNS])?;
    }
    run("ip", &["-n", OPERATOR_NETNS, "link", "set", "lo", "up"])?;
    let links = run("ip", &["-n", OPERATOR_NETNS, "-o", "link", "show"])?;
    if !links.contains(&format!(": {BRIDGE}:")) {
        run(
            "ip",
            &[
                "-n",
                OPERATOR_NETNS,
                "link",
                "add",
                BRIDGE,
                "type",
                "bridge",
            ],
        )?;
    }
    // A fixed MAC: a bridge without one takes its lowest port's, which changes when a host's
    // veth goes away; guests then keep a stale gateway MAC for tens of seconds and their TCP
    // connections (SSH) are reset meanwhile.
    run(
        "ip",
        &[
            "-n",
            OPERATOR_NETNS,
            "link",
            "set",
            BRIDGE,
            "address",
            BRIDGE_MAC,
        ],
    )?;
    run("ip", &["-n", OPERATOR_NETNS, "link", "set", BRIDGE, "up"])?;
    // The operator's address on the emulated internet (the route to the instances' public IPs
    // is the front's: `ensure_public_route`).
    let lo = run(
        "ip",
        &[
            "-n",
            OPERATOR_NETNS,
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "lo",
        ],
    )?;
    // And the archive's (the distribution mirror's stand-in, served by the front).
    for addr in [OPERATOR_ADDR, ARCHIVE_ADDR] {
        let cidr = format!("{addr}/32");
        if !lo.contains(&format!(" {cidr} ")) {
            run(
                "ip",
                &["-n", OPERATOR_NETNS, "addr", "add", &cidr, "dev", "lo"],
            )?;
        }
    }
    // Routing between subnets happens in the operator namespace (per-namespace sysctl).
    run(
        "ip",
        &[
            "netns",
            "exec",
            OPERATOR_NETNS,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ],
    )?;
    let links = run("ip", &["-n", OPERATOR_NETNS, "-o", "link", "show"])?;
    for line in links.lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        let name = name.split('@').next().unwrap_or("");
        if name != "lo" && name != BRIDGE && !name.starts_with("rsv") {
            bail!(
                "the operator namespace has an unexpected link {name:?}: refusing to run with a possible route off the machine"
            );
        }
    }
    Ok(())
}

/// The route to the instances' public IPs, over the bridge (run in the operator namespace, by
/// the front, whenever it applies a changed table of VPC rules): the kernel drops every route
/// through the bridge when its last address goes (a reset flushes them, and changes the table),
/// so it is put back each time.
pub fn ensure_public_route() -> Result<()> {
    run("ip", &["route", "replace", PUBLIC_RANGE, "dev", BRIDGE])?;
    Ok(())
}

/// Adds the blackhole routes in the root namespace, skipping (with a warning) a range the
/// machine itself uses. Returns the ranges added (recorded for `down`).
pub fn add_blackholes(routes_file: &Path) -> Result<Vec<String>> {
    let addrs = run("ip", &["-4", "-o", "addr", "show"])?;
    let mut added: Vec<String> = std::fs::read_to_string(routes_file)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let resolvers = nameservers();
    for cidr in BLACKHOLES {
        let used = addrs
            .split_whitespace()
            .filter_map(|w| w.split('/').next()?.parse::<Ipv4Addr>().ok())
            .chain(resolvers.iter().copied())
            .any(|ip| contains(cidr, ip));
        if used {
            eprintln!(
                "warning: this machine has an address or its DNS resolver in {cidr}; not adding a blackhole route for it"
            );
            continue;
        }
        let existing = run("ip", &["route", "show", "exact", cidr])?;
        if existing.trim().starts_with("blackhole") {
            if !added.iter().any(|a| a == cidr) {
                added.push(cidr.to_string());
            }
            continue;
        }
        if !existing.trim().is_empty() {
            eprintln!(
                "warning: the root namespace already routes {cidr} ({}); not adding a blackhole",
                existing.trim()
            );
            continue;
        }
        run("ip", &["route", "add", "blackhole", cidr])?;
        added.push(cidr.to_string());
    }
    std::fs::write(routes_file, added.join("\n") + "\n")?;
    Ok(added)
}

/// Removes the blackhole routes `up` recorded.
pub fn remove_blackholes(routes_file: &Path) {
    let Ok(routes) = std::fs::read_to_string(routes_file) else {
        return;
    };
    for cidr in routes.lines().filter(|l| !l.trim().is_empty()) {
        if run("ip", &["route", "show", "exact", cidr])
            .is_ok_and(|r| r.trim().starts_with("blackhole"))
        {
            run_quiet("ip", &["route", "del", "blackhole", cidr]);
        }
    }
    std::fs::remove_file(routes_file).ok();
}

/// Every network namespace of the sandbox (the operator one and the hosts').
pub fn sandbox_namespaces() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(HOST_NETNS_PREFIX))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

pub fn delete_netns(name: &str) {
    if exists(name) && !run_quiet("ip", &["netns", "del", name]) {
        // A stale file without a mount behind it.
        std::fs::remove_file(netns_path(name)).ok();
    }
}

/// Gives a host namespace its private IP and a veth into the bridge (run in the operator
/// namespace, by the front). Idempotent: an existing namespace is reused as it is.
pub fn ensure_host(instance_id: &str, ip: Ipv4Addr, subnet_cidr: &str) -> Result<()> {
    let ns = host_netns(instance_id);
    let veth = host_veth(instance_id);
    let (_, len) = parse_cidr(subnet_cidr)?;
    let gw = gateway(subnet_cidr)?;
    let bridge_addrs = run("ip", &["-4", "-o", "addr", "show", "dev", BRIDGE])?;
    let gw_cidr = format!("{gw}/{len}");
    if !bridge_addrs.contains(&format!(" {gw_cidr} ")) {
        run("ip", &["addr", "add", &gw_cidr, "dev", BRIDGE])?;
    }
    if exists(&ns) {
        return Ok(());
    }
    run("ip", &["netns", "add", &ns])?;
    let setup = || -> Result<()> {
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/{len}"),
                "dev",
                "eth0",
            ],
        )?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run(
            "ip",
            &["-n", &ns, "route", "add", "default", "via", &gw.to_string()],
        )?;
        Ok(())
    };
    if let Err(e) = setup() {
        delete_netns(&ns);
        return Err(e.context(format!("cannot set up the network of {instance_id}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        assert_eq!(gateway("10.0.1.0/24").unwrap(), Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(
            gateway("10.0.16.0/20").unwrap(),
            Ipv4Addr::new(10, 0, 16, 1)
        );
        assert!(contains("10.0.0.0/8", Ipv4Addr::new(10, 200, 3, 4)));
        assert!(!contains("10.0.0.0/8", Ipv4Addr::new(192, 0, 2, 2)));
        assert!(contains("0.0.0.0/0", Ipv4Addr::new(1, 2, 3, 4)));
        assert!(parse_cidr("10.0.0.0").is_err());
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }

    #[test]
    fn names_fit_the_kernel_limits() {
        let id = "i-0123456789abcdef0";
        assert!(host_veth(id).len() <= 15);
        assert_eq!(host_veth(id), "rsv789abcdef0");
        assert_eq!(host_netns(id), "rsbx-i-0123456789abcdef0");
    }
}
