//! Reading the fields the front needs out of moto's EC2 (awsquery) XML responses, and writing
//! awsquery error responses. Namespaces are ignored: only local element names matter.

use anyhow::{Context, Result};
use roxmltree::{Document, Node};

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn child_text(node: Node, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

/// `<set><item>…</item>…</set>` items of the first element named `set` anywhere.
fn items<'a, 'i>(doc: &'a Document<'i>, set: &str) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == set)
        .flat_map(|s| {
            s.children()
                .filter(|c| c.is_element() && c.tag_name().name() == "item")
        })
        .collect()
}

fn parse(xml: &str) -> Result<Document<'_>> {
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
    pub private_ip: Option<String>,
    pub subnet_id: Option<String>,
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
            private_ip: child_text(item, "privateIpAddress"),
            subnet_id: child_text(item, "subnetId"),
            key_name: child_text(item, "keyName"),
            root_device_name: child_text(item, "rootDeviceName"),
            block_devices,
        });
    }
    Ok(out)
}

/// `cidrBlock` of the first subnet in a DescribeSubnets response.
pub fn subnet_cidr(xml: &str) -> Result<Option<String>> {
    let doc = parse(xml)?;
    Ok(items(&doc, "subnetSet")
        .first()
        .and_then(|s| child_text(*s, "cidrBlock")))
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
}
