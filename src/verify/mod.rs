//! `redisctl verify`: the acceptance checks on the live cluster, each a row with a verdict and
//! the evidence it was reached on.
//!
//! The model: gather, then judge. One probe script per node, all nodes at once over their
//! pinned sessions, collects what redis-cli prints (CLUSTER INFO / NODES, INFO replication,
//! an unauthenticated PING, a plaintext PING to every TCP socket redis-server listens on, the
//! node certificate), with each run's exit status; one DescribeVolumes reads the
//! root volumes; the security group and the instances' metadata options come from the same
//! observation `plan` makes. Then, with the slot map known, the data write and one script per
//! ACL user run concurrently. The judging in [`checks`] is pure. A node that cannot be reached
//! fails the checks that needed it, with the reason; it never stops the others.
//!
//! Nothing destructive runs: FLUSHALL is tried with an argument the server refuses after the
//! permission check, test keys expire within a minute and are deleted when allowed, and
//! `patient:12345` is written only if absent (`SET … NX`). Passwords travel only on the SSH
//! stdin, and every evidence line is scrubbed of them before it is shown.

mod as_user;
pub mod checks;
mod probe;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::aws::Aws;
use crate::node::{NodeError, NodeRuntime};
use crate::observed::Observed;
use crate::spec::Spec;
use crate::spec::secrets::Secret;

/// One row: a check, its verdict and what was seen.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub evidence: Vec<String>,
}

impl Check {
    pub fn fail(name: impl Into<String>, evidence: Vec<String>) -> Check {
        Check {
            name: name.into(),
            passed: false,
            evidence,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub cluster: String,
    pub checks: Vec<Check>,
    pub elapsed: Duration,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// An error with its causes, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Root volumes: one DescribeVolumes of every node's root volume.
async fn volumes(spec: &Spec, observed: &Observed, aws: &Aws) -> Check {
    let roots = checks::aws::root_volumes(spec, observed);
    let ids: Vec<String> = roots
        .iter()
        .filter_map(|r| Some(r.as_ref().ok()?.volume.clone()))
        .collect();
    let described = if ids.is_empty() {
        Ok(Vec::new())
    } else {
        aws.root_volumes(&spec.cluster.name, &ids)
            .await
            .map_err(|e| chain(&e))
    };
    checks::aws::volumes_encrypted(spec, &roots, described)
}

/// The password of `user`, if it has one.
fn password(secrets: &[(String, Secret)], user: &str) -> Option<Secret> {
    secrets
        .iter()
        .find(|(u, _)| u == user)
        .map(|(_, s)| s.clone())
}

/// Replace every secret value in the evidence (defence in depth: none should be there).
fn scrub(checks: &mut [Check], secrets: &[(String, Secret)]) {
    for c in checks {
        for line in &mut c.evidence {
            for (_, s) in secrets {
                if !s.expose().is_empty() && line.contains(s.expose()) {
                    *line = line.replace(s.expose(), "<redacted>");
                }
            }
        }
    }
}

/// Run every check against the live cluster. Errors only when the checks cannot start at all
/// (the state directory, the known hosts); a node that does not answer is a failed check.
pub async fn run(
    spec: &Spec,
    observed: &Observed,
    aws: &Aws,
    secrets: Vec<(String, Secret)>,
) -> Result<Report, NodeError> {
    let started = Instant::now();
    let rt = Arc::new(NodeRuntime::new(spec, aws.clone(), secrets.clone())?);
    let spec_a = Arc::new(spec.clone());
    let op_pw =
        password(&secrets, &spec.operator_user().name).expect("NodeRuntime::new checked it");
    let token = format!(
        "redisctl-verify-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );

    // Every node probed at once; the root volumes meanwhile.
    let located = rt.locate_all().await.map_err(|e| chain(&e));
    let (probes, vol_check) = tokio::join!(
        probe::probe_all(&rt, &spec_a, &op_pw, located),
        volumes(spec, observed, aws)
    );
    let probes = Arc::new(probes);

    let mut checks = vec![
        checks::health::health(spec, &probes),
        checks::health::slots(spec, &probes),
    ];
    checks.extend(as_user::user_checks(&rt, &spec_a, &probes, &secrets, &token).await);
    checks.push(checks::acl::default_off(&probes));
    checks.push(checks::tls::tls_only(&probes));
    checks.push(checks::tls::tls_protocols(spec, &probes));
    // The CA that signs node certificates at the stage of a CA rotation (the cluster CA when
    // none is under way).
    let dir = &spec.cluster.state_dir;
    let ca = match crate::pki::Authority::load(dir, spec.tls.ca_rotation) {
        Ok(Some(a)) => Ok(a.signer().cert_pem().to_string()),
        Ok(None) => Err(format!("there is no cluster CA in {}", dir.display())),
        Err(e) => Err(format!(
            "cannot read the cluster CA in {}: {e}",
            dir.display()
        )),
    };
    checks.push(checks::tls::certificates(
        &probes,
        ca.as_deref().map_err(Clone::clone),
        SystemTime::now(),
    ));
    checks.push(checks::files::file_modes(&probes));
    checks.push(checks::kernel::checklist(&probes));
    checks.push(vol_check);
    checks.push(checks::aws::security_group(spec, observed));
    checks.push(checks::aws::instance_metadata(spec, observed));
    rt.close().await;
    scrub(&mut checks, &secrets);
    Ok(Report {
        cluster: spec.cluster.name.clone(),
        checks,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_secrets() {
        let mut c = vec![Check::fail("x", vec!["saw hunter2 here".into()])];
        scrub(&mut c, &[("app".into(), Secret::new("hunter2".into()))]);
        assert_eq!(c[0].evidence[0], "saw <redacted> here");
    }
}
