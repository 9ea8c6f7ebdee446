//! `[nodes.root_volume]`: size, type, and encryption at rest (KMS key, at launch or by swap).

use super::checks::{int_in, is_kms_key};
use crate::spec::diag::Diags;
use crate::spec::raw::RawRootVolume;
use crate::spec::types::{EncryptionStrategy, RootVolume};

const DEFAULT_KMS_KEY: &str = "alias/aws/ebs";
const ROOT_VOLUME_TYPES: &[&str] = &["gp3", "gp2", "io1", "io2", "standard"];

pub(super) fn root_volume(raw: Option<&RawRootVolume>, d: &mut Diags<'_>) -> Option<RootVolume> {
    let default = RawRootVolume::default();
    let raw = raw.unwrap_or(&default);
    let p = "nodes.root_volume";
    let size = int_in(raw.size_gib, 8, 8, 16384, &format!("{p}.size_gib"), d);
    let vt = raw.volume_type.clone().unwrap_or_else(|| "gp3".into());
    if !ROOT_VOLUME_TYPES.contains(&vt.as_str()) {
        d.error(
            &format!("{p}.type"),
            format!(
                "`{vt}` cannot be a root volume (use one of {})",
                ROOT_VOLUME_TYPES.join(", ")
            ),
        );
    }
    let encrypted = raw.encrypted.unwrap_or(true);
    if !encrypted {
        d.warn(
            &format!("{p}.encrypted"),
            "root volumes will not be encrypted at rest: Redis's data files (AOF, RDB) are stored in plaintext",
            "set encrypted = true; for health data this is required",
        );
    }
    let kms_key = raw
        .kms_key
        .clone()
        .unwrap_or_else(|| DEFAULT_KMS_KEY.into());
    if !is_kms_key(&kms_key) {
        d.error(
            &format!("{p}.kms_key"),
            format!("`{kms_key}` is not a KMS key id, key ARN, alias (alias/…) or alias ARN"),
        );
    }
    let strategy = match raw.strategy.as_deref() {
        None | Some("at-launch") => EncryptionStrategy::AtLaunch,
        Some("swap") => {
            if !encrypted {
                d.error(
                    &format!("{p}.strategy"),
                    "strategy = \"swap\" encrypts volumes after launch, but encrypted = false",
                );
            }
            EncryptionStrategy::Swap
        }
        Some(other) => {
            d.error(
                &format!("{p}.strategy"),
                format!("`{other}` is not a strategy: use \"at-launch\" or \"swap\""),
            );
            EncryptionStrategy::AtLaunch
        }
    };
    Some(RootVolume {
        size_gib: size?,
        volume_type: vt,
        encrypted,
        kms_key,
        strategy,
    })
}
