//! What the timed region's unit tests share: a region at speed 1 (the modelled durations as
//! they are) and moto's answers about one instance.

use super::{Region, RegionSettings};
pub use crate::front::moto::params as p;
use crate::xml;
use std::collections::HashMap;
use std::time::Instant;

/// Speed 1: the modelled durations as they are.
pub fn region() -> Region {
    Region::new(
        RegionSettings {
            speed: 1.0,
            ..RegionSettings::default()
        },
        7,
    )
}

pub const RUN: &str = r#"<RunInstancesResponse><instancesSet><item><instanceId>i-1</instanceId><instanceState><code>0</code><name>pending</name></instanceState><stateReason><code/><message/></stateReason><reason/></item></instancesSet></RunInstancesResponse>"#;
pub const DESCRIBE: &str = r#"<DescribeInstancesResponse><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>i-1</instanceId><instanceState><code>16</code><name>running</name></instanceState><stateReason><code/><message/></stateReason><reason/></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#;

/// The instances DescribeInstances shows at `now`.
pub fn describe_shows(r: &Region, now: Instant) -> Vec<xml::Instance> {
    let body = r
        .rewrite("DescribeInstances", DESCRIBE, &HashMap::new(), now)
        .unwrap();
    xml::instances(&body).unwrap()
}
