//! A client's patience with EC2's eventual consistency, for tests that call EC2 directly: every
//! test crate uses it (the sandbox's own tests include this file by path, as `ami.rs`).

use std::time::{Duration, Instant};

use aws_sdk_ec2::error::ProvideErrorMetadata;

/// How long a new resource may stay NotFound, or a state take to settle, in these tests (the
/// longest modelled window, a snapshot's 60 s, is 3 s at the default speed factor).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Retries `call` while it fails with a `*.NotFound` code (a new resource inside its
/// eventual-consistency window), for at most [`SETTLE_LIMIT`].
pub async fn until_found<T, E, Fut>(what: &str, mut call: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Result<T, E>>,
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    let t = Instant::now();
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e)
                if e.code().is_some_and(|c| c.ends_with(".NotFound"))
                    && t.elapsed() < SETTLE_LIMIT =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}
