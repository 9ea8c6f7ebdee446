//! Read-only looks at EC2 beyond the observation `plan` makes, for `verify`: plain data out,
//! no SDK types.

use super::{Aws, AwsError, api_err};

/// A volume's encryption, as DescribeVolumes reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFacts {
    pub id: String,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
}

impl Aws {
    /// The volumes `ids` in one DescribeVolumes (`cluster` names the call in an error). A
    /// volume that does not exist is absent from the answer, or fails the whole call.
    pub async fn root_volumes(
        &self,
        cluster: &str,
        ids: &[String],
    ) -> Result<Vec<VolumeFacts>, AwsError> {
        let out = self
            .client
            .describe_volumes()
            .set_volume_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| api_err("DescribeVolumes", cluster, e))?;
        Ok(out
            .volumes()
            .iter()
            .filter_map(|v| {
                Some(VolumeFacts {
                    id: v.volume_id()?.to_string(),
                    encrypted: v.encrypted() == Some(true),
                    kms_key_id: v.kms_key_id().map(String::from),
                })
            })
            .collect())
    }
}
