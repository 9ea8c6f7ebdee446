//! The Ubuntu image the tests boot, looked up once for every test crate: the e2e harness
//! (`tests/common`), `tests/ssh_session.rs` and the sandbox's own tests (which include this file
//! by path, having no other crate to share it through).

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;

/// The newest Canonical Ubuntu 24.04 image, resolved as redisctl does (Canonical's owner id and
/// the image name pattern of `spec::types`).
pub async fn noble_ami(ec2: &Client) -> String {
    let imgs = ec2
        .describe_images()
        .owners("099720109477")
        .filters(
            Filter::builder()
                .name("name")
                .values("ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .images
        .unwrap_or_default();
    let newest = imgs
        .iter()
        .max_by_key(|i| i.creation_date.clone())
        .expect("no Ubuntu noble image in the sandbox");
    newest.image_id.clone().unwrap()
}
