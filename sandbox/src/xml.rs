//! Reading the fields the front needs out of moto's EC2 (awsquery) XML responses, rewriting
//! them (states, progress, hidden items) for the timed region, and writing awsquery error
//! responses. Namespaces are ignored: only local element names matter. A rewrite is a list of
//! [`Edit`]s of byte ranges that roxmltree gives for each element, spliced into moto's text, so
//! everything not rewritten stays byte for byte as moto wrote it.

use anyhow::{Context, Result};
use roxmltree::{Document, Node};

pub(crate) fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

pub(crate) fn child_text(node: Node, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

/// `<set><item>…</item>…</set>` items of the first element named `set` anywhere.
pub(crate) fn items<'a, 'i>(doc: &'a Document<'i>, set: &str) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == set)
        .flat_map(|s| {
            s.children()
                .filter(|c| c.is_element() && c.tag_name().name() == "item")
        })
        .collect()
}

pub(crate) fn parse(xml: &str) -> Result<Document<'_>> {
    Document::parse(xml).context("moto answered with XML that does not parse")
}

/// The text of the first element named `name` anywhere in the document.
pub fn first_text(xml: &str, name: &str) -> Result<Option<String>> {
    let doc = parse(xml)?;
    Ok(doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == name)
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockDevice {
    pub device_name: String,
    pub volume_id: String,
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    pub instance_id: String,
    pub state: String,
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    pub private_ip: Option<String>,
    pub subnet_id: Option<String>,
    pub vpc_id: Option<String>,
    /// The public IPv4 address moto gave it (moto keeps one for good; the front shows its own).
    pub public_ip: Option<String>,
    /// The security groups of the instance and of its network interfaces.
    pub group_ids: Vec<String>,
    pub key_name: Option<String>,
    pub root_device_name: Option<String>,
    pub block_devices: Vec<BlockDevice>,
}

impl Instance {
    /// The volume attached at the root device, if any.
    pub fn root_volume(&self) -> Option<&BlockDevice> {
        let root = self.root_device_name.as_deref()?;
        self.block_devices.iter().find(|b| b.device_name == root)
    }
}

/// Every instance in a RunInstances / DescribeInstances / Start / Stop / Terminate response.
pub fn instances(xml: &str) -> Result<Vec<Instance>> {
    let doc = parse(xml)?;
    let mut out = Vec::new();
    for item in items(&doc, "instancesSet") {
        let Some(instance_id) = child_text(item, "instanceId") else {
            continue;
        };
        let state = child(item, "instanceState")
            .or_else(|| child(item, "currentState"))
            .and_then(|s| child_text(s, "name"))
            .unwrap_or_default();
        let block_devices = child(item, "blockDeviceMapping")
            .map(|m| {
                m.children()
                    .filter(|c| c.is_element() && c.tag_name().name() == "item")
                    .filter_map(|b| {
                        let ebs = child(b, "ebs")?;
                        Some(BlockDevice {
                            device_name: child_text(b, "deviceName")?,
                            volume_id: child_text(ebs, "volumeId")?,
                            delete_on_termination: child_text(ebs, "deleteOnTermination")
                                .is_some_and(|v| v == "true"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Instance {
            instance_id,
            state,
            image_id: child_text(item, "imageId"),
            instance_type: child_text(item, "instanceType"),
            private_ip: child_text(item, "privateIpAddress"),
            subnet_id: child_text(item, "subnetId"),
            vpc_id: child_text(item, "vpcId"),
            public_ip: child_text(item, "ipAddress").filter(|a| !a.is_empty()),
            group_ids: group_ids(item),
            key_name: child_text(item, "keyName"),
            root_device_name: child_text(item, "rootDeviceName"),
            block_devices,
        });
    }
    Ok(out)
}

fn group_ids(item: Node) -> Vec<String> {
    let mut ids: Vec<String> = item
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "groupId")
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `cidrBlock` of the first subnet in a DescribeSubnets response.
pub fn subnet_cidr(xml: &str) -> Result<Option<String>> {
    let doc = parse(xml)?;
    Ok(items(&doc, "subnetSet")
        .first()
        .and_then(|s| child_text(*s, "cidrBlock")))
}

/// `memoryInfo/sizeInMiB` and `vCpuInfo/defaultVCpus` of the first type in a
/// DescribeInstanceTypes response.
pub fn instance_type_size(xml: &str) -> Result<Option<(u64, u64)>> {
    let doc = parse(xml)?;
    Ok(items(&doc, "instanceTypeSet").first().and_then(|t| {
        let mem = child(*t, "memoryInfo").and_then(|m| child_text(m, "sizeInMiB"))?;
        let cpus = child(*t, "vCpuInfo").and_then(|c| child_text(c, "defaultVCpus"))?;
        Some((mem.parse().ok()?, cpus.parse().ok()?))
    }))
}

/// `publicKey` (or, failing that, nothing) of the first key pair in a DescribeKeyPairs response.
pub fn key_public(xml: &str) -> Result<Option<String>> {
    let doc = parse(xml)?;
    Ok(items(&doc, "keySet")
        .first()
        .and_then(|s| child_text(*s, "publicKey")))
}

/// The base64 `userData/value` of a DescribeInstanceAttribute response.
pub fn user_data(xml: &str) -> Result<Option<String>> {
    let doc = parse(xml)?;
    Ok(doc
        .descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "userData")
        .and_then(|u| child_text(u, "value"))
        .filter(|v| !v.is_empty()))
}

/// The error code of an awsquery error response (`<Response><Errors><Error><Code>`).
pub fn error_code(xml: &str) -> Option<String> {
    let doc = Document::parse(xml).ok()?;
    doc.descendants()
        .find(|n| n.is_element() && n.tag_name().name() == "Error")
        .and_then(|e| child_text(e, "Code"))
}

/// A replacement of a byte range of a document (an element, usually).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub range: std::ops::Range<usize>,
    pub text: String,
}

/// The document with the edits applied. An edit inside a range another edit already replaces
/// (a field of an item that is removed) is dropped.
pub fn splice(xml: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.range.start, std::cmp::Reverse(e.range.end)));
    let mut out = String::with_capacity(xml.len());
    let mut at = 0;
    for e in edits {
        if e.range.start < at {
            continue;
        }
        out.push_str(&xml[at..e.range.start]);
        out.push_str(&e.text);
        at = e.range.end;
    }
    out.push_str(&xml[at..]);
    out
}

/// `<name>text</name>`, the text escaped.
fn leaf(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", escape(text))
}

/// The edit that replaces `node` by `<name>text</name>`.
fn replace_leaf(node: Node, text: &str) -> Edit {
    Edit {
        range: node.range(),
        text: leaf(node.tag_name().name(), text),
    }
}

fn removal(node: Node) -> Edit {
    Edit {
        range: node.range(),
        text: String::new(),
    }
}

/// Whether `node` is an `<item>` of a set named one of `sets`.
fn is_item_of(node: &Node, sets: &[&str]) -> bool {
    node.is_element()
        && node.tag_name().name() == "item"
        && node
            .parent_element()
            .is_some_and(|p| sets.contains(&p.tag_name().name()))
}

/// The nodes describing one resource each: the items of `sets`, and the root element when it
/// is one of `roots` (a create's answer describes its resource at the top level).
fn resource_nodes<'a, 'i>(
    doc: &'a Document<'i>,
    sets: &[&str],
    roots: &[&str],
) -> Vec<Node<'a, 'i>> {
    let root = doc.root_element();
    let mut nodes: Vec<Node> = doc.descendants().filter(|n| is_item_of(n, sets)).collect();
    if roots.contains(&root.tag_name().name()) {
        nodes.push(root);
    }
    nodes
}

/// The code EC2 gives an instance state name (`instanceState/code`).
pub fn state_code(name: &str) -> u16 {
    match name {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        "stopped" => 80,
        _ => 16,
    }
}

pub(crate) fn instance_state(element: &str, name: &str) -> String {
    format!(
        "<{element}><code>{}</code><name>{name}</name></{element}>",
        state_code(name)
    )
}

/// How the timed region shows one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceView {
    /// Left out of lists (inside its consistency window).
    pub hide: bool,
    /// The state shown instead of moto's (`instanceState` or `currentState`).
    pub state: Option<&'static str>,
    /// The state shown as `previousState` in a Start/Stop/Terminate answer.
    pub previous: Option<&'static str>,
    /// `stateReason` code and message (also the `stateTransitionReason`).
    pub reason: Option<(String, String)>,
}

/// The instances of a Describe/Run/Start/Stop/Terminate/DescribeInstanceStatus answer as the
/// region shows them. A reservation whose instances are all hidden is left out as a whole.
pub fn rewrite_instances(xml: &str, view: impl Fn(&str) -> InstanceView) -> Result<String> {
    let doc = parse(xml)?;
    let mut edits = Vec::new();
    for item in resource_nodes(&doc, &["instancesSet", "instanceStatusSet"], &[]) {
        let Some(id) = child_text(item, "instanceId") else {
            continue;
        };
        let v = view(&id);
        if v.hide {
            edits.push(removal(hidden_reservation(item, &view).unwrap_or(item)));
            continue;
        }
        for (element, state) in [
            ("instanceState", v.state),
            ("currentState", v.state),
            ("previousState", v.previous),
        ] {
            if let (Some(node), Some(name)) = (child(item, element), state) {
                edits.push(Edit {
                    range: node.range(),
                    text: instance_state(element, name),
                });
            }
        }
        if let Some((code, message)) = &v.reason {
            if let Some(node) = child(item, "stateReason") {
                edits.push(Edit {
                    range: node.range(),
                    text: format!(
                        "<stateReason>{}{}</stateReason>",
                        leaf("code", code),
                        leaf("message", message)
                    ),
                });
            }
            if let Some(node) = child(item, "reason") {
                edits.push(replace_leaf(node, message));
            }
        }
    }
    Ok(splice(xml, edits))
}

/// The reservation item around an instance item, when every instance in it is hidden.
fn hidden_reservation<'a, 'i>(
    item: Node<'a, 'i>,
    view: &impl Fn(&str) -> InstanceView,
) -> Option<Node<'a, 'i>> {
    let set = item.parent_element()?;
    let reservation = set.parent_element()?;
    if set.tag_name().name() != "instancesSet" || !is_item_of(&reservation, &["reservationSet"]) {
        return None;
    }
    set.children()
        .filter(|c| c.is_element())
        .all(|c| child_text(c, "instanceId").is_some_and(|id| view(&id).hide))
        .then_some(reservation)
}

/// What the front shows of an instance's boots instead of moto's record (see
/// [`rewrite_boots`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootView {
    /// `Some(Some(ip))`: the public IP it has now (its `ipAddress`, `dnsName` and the
    /// `association` of its interfaces say so); `Some(None)`: none (all three removed: a stopped
    /// instance has no public IP); `None`: moto's text. Only instances moto gave an address
    /// are touched.
    pub public_ip: Option<Option<std::net::Ipv4Addr>>,
    /// Its last start (EC2's `LaunchTime`; moto keeps the first launch's), when the front
    /// started it.
    pub launched: Option<std::time::SystemTime>,
}

/// The instances of an answer with their public IPs and launch times as `view(id)` gives them,
/// in one pass over the document.
pub fn rewrite_boots(xml: &str, view: impl Fn(&str) -> BootView) -> Result<String> {
    let doc = parse(xml)?;
    let mut edits = Vec::new();
    for item in resource_nodes(&doc, &["instancesSet"], &[]) {
        let Some(id) = child_text(item, "instanceId") else {
            continue;
        };
        let v = view(&id);
        if let (Some(t), Some(node)) = (v.launched, child(item, "launchTime")) {
            edits.push(replace_leaf(node, &iso8601(t)));
        }
        if let Some(e) = groups_of_primary_interface(xml, item) {
            edits.push(e);
        }
        let (Some(shown), Some(ip_node)) = (v.public_ip, child(item, "ipAddress")) else {
            continue;
        };
        let dashed = shown.map(|ip| ip.to_string().replace('.', "-"));
        match shown {
            Some(ip) => edits.push(replace_leaf(ip_node, &ip.to_string())),
            None => edits.push(removal(ip_node)),
        }
        if let Some(dns) = child(item, "dnsName") {
            let name = dashed
                .as_ref()
                .map(|d| format!("ec2-{d}.compute-1.amazonaws.com"))
                .unwrap_or_default();
            edits.push(replace_leaf(dns, &name));
        }
        for assoc in item
            .descendants()
            .filter(|n| n.is_element() && n.tag_name().name() == "association")
        {
            edits.push(match (shown, &dashed) {
                (Some(ip), Some(d)) => Edit {
                    range: assoc.range(),
                    text: format!(
                        "<association>{}{}{}</association>",
                        leaf("ipOwnerId", "amazon"),
                        leaf("publicDnsName", &format!("ec2-{d}.compute-1.amazonaws.com")),
                        leaf("publicIp", &ip.to_string())
                    ),
                },
                _ => removal(assoc),
            });
        }
    }
    Ok(splice(xml, edits))
}

/// EC2 lists an instance's security groups (`groupSet`) as those of its primary network
/// interface; moto leaves the instance's empty when the launch gave the groups on the
/// interface (`NetworkInterface.N.SecurityGroupId`). The edit that copies them, if so.
fn groups_of_primary_interface(xml: &str, item: Node) -> Option<Edit> {
    let own = child(item, "groupSet")?;
    if own.children().any(|c| c.is_element()) {
        return None;
    }
    let primary = child(item, "networkInterfaceSet")?
        .children()
        .filter(|c| c.is_element())
        .find(|ni| {
            child(*ni, "attachment")
                .and_then(|a| child_text(a, "deviceIndex"))
                .is_none_or(|d| d == "0")
        })?;
    let groups = child(primary, "groupSet")?;
    groups.children().any(|c| c.is_element()).then(|| Edit {
        range: own.range(),
        text: xml[groups.range()].to_string(),
    })
}

/// A time as EC2 writes it: `2026-12-06T05:27:17.000Z` (UTC).
pub fn iso8601(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// A GetConsoleOutput answer with the console the front shows: `Some((base64, posted))` sets
/// `output` and `timestamp`; `None` leaves no `output` (EC2 before anything was posted).
pub fn rewrite_console(xml: &str, shown: Option<(&str, std::time::SystemTime)>) -> Result<String> {
    let doc = parse(xml)?;
    let root = doc.root_element();
    let mut edits = Vec::new();
    for name in ["output", "timestamp"] {
        if let Some(n) = child(root, name) {
            edits.push(removal(n));
        }
    }
    let end = root.range().end;
    let close = xml[..end]
        .rfind("</")
        .context("the GetConsoleOutput answer has no closing tag")?;
    let mut text = leaf(
        "timestamp",
        &iso8601(shown.map_or_else(std::time::SystemTime::now, |(_, t)| t)),
    );
    if let Some((b64, _)) = shown {
        text.push_str(&leaf("output", b64));
    }
    edits.push(Edit {
        range: close..close,
        text,
    });
    Ok(splice(xml, edits))
}

/// One volume attachment (a DetachVolume answer; an `attachmentSet` item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub volume_id: String,
    pub instance_id: String,
    pub device: String,
    pub attach_time: String,
}

/// The attachment an AttachVolume/DetachVolume answer describes.
pub fn attachment(xml: &str) -> Result<Option<Attachment>> {
    let doc = parse(xml)?;
    let root = doc.root_element();
    let field = |name| child_text(root, name);
    Ok(match (field("volumeId"), field("instanceId")) {
        (Some(volume_id), Some(instance_id)) => Some(Attachment {
            volume_id,
            instance_id,
            device: field("device").unwrap_or_default(),
            attach_time: field("attachTime").unwrap_or_default(),
        }),
        _ => None,
    })
}

/// How the timed region shows one volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeView {
    pub hide: bool,
    /// The status shown instead of moto's (`creating`, `error`).
    pub status: Option<&'static str>,
    /// The instance whose attachment is still `attaching`.
    pub attaching: Option<String>,
    /// An attachment moto already dropped that is still `detaching` (the volume `in-use`).
    pub detaching: Option<Attachment>,
}

/// The volumes of a DescribeVolumes or CreateVolume answer as the region shows them.
pub fn rewrite_volumes(xml: &str, view: impl Fn(&str) -> VolumeView) -> Result<String> {
    let doc = parse(xml)?;
    let mut edits = Vec::new();
    for node in resource_nodes(&doc, &["volumeSet"], &["CreateVolumeResponse"]) {
        let Some(id) = child_text(node, "volumeId") else {
            continue;
        };
        let v = view(&id);
        if v.hide {
            edits.push(removal(node));
            continue;
        }
        let set = child(node, "attachmentSet");
        let attachments: Vec<Node> = set
            .map(|s| {
                s.children()
                    .filter(|c| is_item_of(c, &["attachmentSet"]))
                    .collect()
            })
            .unwrap_or_default();
        let mut status = v.status;
        if let (Some(a), Some(set), true) = (&v.detaching, set, attachments.is_empty()) {
            status = status.or(Some("in-use"));
            edits.push(Edit {
                range: set.range(),
                text: format!(
                    "<attachmentSet><item>{}{}{}{}{}</item></attachmentSet>",
                    leaf("volumeId", &a.volume_id),
                    leaf("instanceId", &a.instance_id),
                    leaf("device", &a.device),
                    leaf("status", "detaching"),
                    leaf("attachTime", &a.attach_time)
                ),
            });
        }
        if let Some(inst) = &v.attaching {
            for a in &attachments {
                if child_text(*a, "instanceId").as_deref() == Some(inst.as_str())
                    && let Some(s) = child(*a, "status")
                {
                    edits.push(replace_leaf(s, "attaching"));
                }
            }
        }
        if let (Some(s), Some(node)) = (status, child(node, "status")) {
            edits.push(replace_leaf(node, s));
        }
    }
    Ok(splice(xml, edits))
}

/// How the timed region shows one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotView {
    pub hide: bool,
    /// Still `pending`, at this progress (percent).
    pub pending: Option<u8>,
}

/// The snapshots of a DescribeSnapshots or CreateSnapshot answer as the region shows them.
pub fn rewrite_snapshots(xml: &str, view: impl Fn(&str) -> SnapshotView) -> Result<String> {
    let doc = parse(xml)?;
    let mut edits = Vec::new();
    for node in resource_nodes(&doc, &["snapshotSet"], &["CreateSnapshotResponse"]) {
        let Some(id) = child_text(node, "snapshotId") else {
            continue;
        };
        let v = view(&id);
        if v.hide {
            edits.push(removal(node));
            continue;
        }
        if let Some(p) = v.pending {
            if let Some(s) = child(node, "status") {
                edits.push(replace_leaf(s, "pending"));
            }
            if let Some(s) = child(node, "progress") {
                edits.push(replace_leaf(s, &format!("{p}%")));
            }
        }
    }
    Ok(splice(xml, edits))
}

/// The NAT gateways of a DescribeNatGateways or CreateNatGateway answer with the state the
/// region shows (`state(id)`: `Some` replaces moto's `<state>`).
pub fn rewrite_nat_gateways(
    xml: &str,
    state: impl Fn(&str) -> Option<&'static str>,
) -> Result<String> {
    let doc = parse(xml)?;
    let edits = doc
        .descendants()
        .filter(|n| {
            is_item_of(n, &["natGatewaySet"])
                || (n.is_element() && n.tag_name().name() == "natGateway")
        })
        .filter_map(|gw| {
            let id = child_text(gw, "natGatewayId")?;
            let shown = state(&id)?;
            Some(replace_leaf(child(gw, "state")?, shown))
        })
        .collect();
    Ok(splice(xml, edits))
}

/// The list of a Describe answer without the items of `set` whose id (any of `id_elements`,
/// direct children of the item) is hidden.
pub fn hide_items(
    xml: &str,
    set: &str,
    id_elements: &[&str],
    hidden: impl Fn(&str) -> bool,
) -> Result<String> {
    let doc = parse(xml)?;
    let edits = doc
        .descendants()
        .filter(|n| is_item_of(n, &[set]))
        .filter(|item| {
            id_elements
                .iter()
                .any(|e| child_text(*item, e).is_some_and(|id| hidden(&id)))
        })
        .map(removal)
        .collect();
    Ok(splice(xml, edits))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An EC2 awsquery error body, as AWS sends it.
pub fn error_response(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        escape(code),
        escape(message),
        escape(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <reservationId>r-abc</reservationId>
  <instancesSet>
    <item>
      <instanceId>i-0123456789abcdef0</instanceId>
      <instanceState><code>0</code><name>pending</name></instanceState>
      <privateIpAddress>10.0.1.10</privateIpAddress>
      <subnetId>subnet-1</subnetId>
      <keyName>k</keyName>
      <rootDeviceName>/dev/sda1</rootDeviceName>
      <blockDeviceMapping>
        <item><deviceName>/dev/sda1</deviceName><ebs><volumeId>vol-1</volumeId><deleteOnTermination>true</deleteOnTermination></ebs></item>
        <item><deviceName>/dev/sdf</deviceName><ebs><volumeId>vol-2</volumeId><deleteOnTermination>false</deleteOnTermination></ebs></item>
      </blockDeviceMapping>
      <tagSet><item><key>Name</key><value>n</value></item></tagSet>
    </item>
  </instancesSet>
</RunInstancesResponse>"#;

    /// Groups given on the launch's network interface: EC2 lists them on the instance too.
    #[test]
    fn an_instance_lists_its_primary_interfaces_groups() {
        let xml = r#"<DescribeInstancesResponse><reservationSet><item><instancesSet><item>
      <instanceId>i-1</instanceId>
      <groupSet/>
      <networkInterfaceSet><item><attachment><deviceIndex>0</deviceIndex></attachment>
        <groupSet><item><groupId>sg-1</groupId><groupName>redis-cluster-sg</groupName></item></groupSet>
      </item></networkInterfaceSet>
    </item><item>
      <instanceId>i-2</instanceId>
      <groupSet><item><groupId>sg-2</groupId><groupName>own</groupName></item></groupSet>
      <networkInterfaceSet><item><groupSet><item><groupId>sg-9</groupId></item></groupSet></item></networkInterfaceSet>
    </item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#;
        let out = rewrite_boots(xml, |_| BootView::default()).unwrap();
        let doc = roxmltree::Document::parse(&out).unwrap();
        let groups = |id: &str| -> Vec<String> {
            let item = doc
                .descendants()
                .find(|n| n.is_element() && child_text(*n, "instanceId").as_deref() == Some(id))
                .unwrap();
            child(item, "groupSet")
                .unwrap()
                .descendants()
                .filter(|n| n.is_element() && n.tag_name().name() == "groupId")
                .filter_map(|n| n.text().map(String::from))
                .collect()
        };
        assert_eq!(groups("i-1"), ["sg-1"]);
        assert_eq!(groups("i-2"), ["sg-2"], "an instance's own list is kept");
    }

    #[test]
    fn run_instances_fields() {
        let got = instances(RUN).unwrap();
        assert_eq!(got.len(), 1);
        let i = &got[0];
        assert_eq!(i.instance_id, "i-0123456789abcdef0");
        assert_eq!(i.state, "pending");
        assert_eq!(i.private_ip.as_deref(), Some("10.0.1.10"));
        assert_eq!(i.subnet_id.as_deref(), Some("subnet-1"));
        assert_eq!(i.key_name.as_deref(), Some("k"));
        assert_eq!(i.block_devices.len(), 2);
        let root = i.root_volume().unwrap();
        assert_eq!(root.volume_id, "vol-1");
        assert!(root.delete_on_termination);
        assert!(!i.block_devices[1].delete_on_termination);
    }

    #[test]
    fn describe_instances_nested_in_reservations() {
        let xml = r#"<DescribeInstancesResponse><reservationSet><item><instancesSet>
            <item><instanceId>i-1</instanceId><instanceState><name>stopped</name></instanceState>
            <rootDeviceName>/dev/sda1</rootDeviceName><blockDeviceMapping/></item>
            </instancesSet></item><item><instancesSet><item><instanceId>i-2</instanceId></item>
            </instancesSet></item></reservationSet></DescribeInstancesResponse>"#;
        let got = instances(xml).unwrap();
        assert_eq!(
            got.iter()
                .map(|i| i.instance_id.as_str())
                .collect::<Vec<_>>(),
            ["i-1", "i-2"]
        );
        assert_eq!(got[0].state, "stopped");
        assert!(got[0].root_volume().is_none());
    }

    #[test]
    fn state_change_uses_current_state() {
        let xml = r#"<StopInstancesResponse><instancesSet><item><instanceId>i-1</instanceId>
            <previousState><name>running</name></previousState><currentState><name>stopping</name></currentState>
            </item></instancesSet></StopInstancesResponse>"#;
        assert_eq!(instances(xml).unwrap()[0].state, "stopping");
    }

    #[test]
    fn simple_fields() {
        let xml = r#"<CreateSnapshotResponse xmlns="x"><snapshotId>snap-1</snapshotId></CreateSnapshotResponse>"#;
        assert_eq!(
            first_text(xml, "snapshotId").unwrap().as_deref(),
            Some("snap-1")
        );
        let xml = r#"<DescribeSubnetsResponse><subnetSet><item><subnetId>s</subnetId><cidrBlock>10.0.2.0/24</cidrBlock></item></subnetSet></DescribeSubnetsResponse>"#;
        assert_eq!(subnet_cidr(xml).unwrap().as_deref(), Some("10.0.2.0/24"));
        let xml = r#"<DescribeKeyPairsResponse><keySet><item><keyName>k</keyName><publicKey>ssh-ed25519 AAAA k</publicKey></item></keySet></DescribeKeyPairsResponse>"#;
        assert_eq!(
            key_public(xml).unwrap().as_deref(),
            Some("ssh-ed25519 AAAA k")
        );
        let xml = r#"<DescribeInstanceAttributeResponse><instanceId>i</instanceId><userData><value>I2Nsb3VkLWNvbmZpZw==</value></userData></DescribeInstanceAttributeResponse>"#;
        assert_eq!(
            user_data(xml).unwrap().as_deref(),
            Some("I2Nsb3VkLWNvbmZpZw==")
        );
        let xml =
            r#"<DescribeInstanceAttributeResponse><userData/></DescribeInstanceAttributeResponse>"#;
        assert_eq!(user_data(xml).unwrap(), None);
    }

    #[test]
    fn splice_keeps_the_rest_and_drops_edits_inside_a_removal() {
        let xml = "<a><b>1</b><c>2</c></a>";
        let edits = vec![
            Edit {
                range: 3..11,
                text: String::new(),
            },
            Edit {
                range: 6..7,
                text: "x".into(),
            },
            Edit {
                range: 14..15,
                text: "3".into(),
            },
        ];
        assert_eq!(splice(xml, edits), "<a><c>3</c></a>");
    }

    #[test]
    fn hidden_items_and_instances_leave_the_lists() {
        let xml = r#"<DescribeSubnetsResponse><subnetSet><item><subnetId>s-1</subnetId><vpcId>v</vpcId></item><item><subnetId>s-2</subnetId><vpcId>v</vpcId></item></subnetSet></DescribeSubnetsResponse>"#;
        let out = hide_items(xml, "subnetSet", &["subnetId"], |id| id == "s-1").unwrap();
        assert_eq!(
            out,
            r#"<DescribeSubnetsResponse><subnetSet><item><subnetId>s-2</subnetId><vpcId>v</vpcId></item></subnetSet></DescribeSubnetsResponse>"#
        );
        // Hiding by a VPC id leaves its subnets alone.
        assert_eq!(
            hide_items(xml, "subnetSet", &["subnetId"], |id| id == "v").unwrap(),
            xml
        );

        // One of two instances of a reservation hidden: the other stays, with its rewritten state.
        let two = RUN.replace(
            "<instancesSet>",
            "<instancesSet><item><instanceId>i-hidden</instanceId></item>",
        );
        let out = rewrite_instances(&two, |id| InstanceView {
            hide: id == "i-hidden",
            state: Some("stopping"),
            ..InstanceView::default()
        })
        .unwrap();
        let shown = instances(&out).unwrap();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].state, "stopping");
        assert!(out.contains("<code>64</code>"), "{out}");
    }

    #[test]
    fn error_round_trip() {
        let body = error_response(
            "RequestLimitExceeded",
            "Request limit exceeded <injected>",
            "req-1",
        );
        assert_eq!(error_code(&body).as_deref(), Some("RequestLimitExceeded"));
        assert!(body.contains("&lt;injected&gt;"));
        assert!(body.contains("<RequestID>req-1</RequestID>"));
    }

    #[test]
    fn times_as_ec2_writes_them() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_535_122_379);
        assert_eq!(iso8601(t), "2026-12-06T05:32:02.379Z");
        assert_eq!(iso8601(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn console_output_as_the_front_shows_it() {
        // moto's answer: its fixed sample text.
        let moto = r#"<?xml version="1.0" encoding="UTF-8"?>
<GetConsoleOutputResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><instanceId>i-1</instanceId><timestamp>2025-01-01T00:00:00.000Z</timestamp><output>TGludXg=</output></GetConsoleOutputResponse>"#;
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_736_935_200);
        let shown = rewrite_console(moto, Some(("ZWMyOiBoaQ==", t))).unwrap();
        assert_eq!(
            first_text(&shown, "output").unwrap().as_deref(),
            Some("ZWMyOiBoaQ==")
        );
        assert_eq!(
            first_text(&shown, "timestamp").unwrap().as_deref(),
            Some("2025-01-15T10:00:00.000Z")
        );
        assert_eq!(
            first_text(&shown, "instanceId").unwrap().as_deref(),
            Some("i-1")
        );
        assert_eq!(shown.matches("<output>").count(), 1);
        // Nothing posted yet: no output at all, a timestamp still.
        let none = rewrite_console(moto, None).unwrap();
        assert_eq!(first_text(&none, "output").unwrap(), None);
        assert!(first_text(&none, "timestamp").unwrap().is_some());
        assert!(none.ends_with("</GetConsoleOutputResponse>"));
    }
}
