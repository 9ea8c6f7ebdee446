//! The data-distribution check's choices: the key it writes and the user it writes as.

use crate::redis::acl;
use crate::redis::keyspace::glob;
use crate::spec::{AclUser, Spec};

/// The key the data-distribution check writes (the hand procedure's example).
pub const DATA_KEY: &str = "patient:12345";

/// The user the data check writes as: the first enabled user (not the operator) whose key
/// patterns cover [`DATA_KEY`] and who may SET and GET, else the operator.
pub fn data_writer(spec: &Spec) -> &AclUser {
    spec.users
        .iter()
        .filter(|u| u.enabled && !u.operator && u.password.is_some())
        .find(|u| {
            u.keys.iter().any(|p| glob(p, DATA_KEY))
                && acl::allows(&u.commands, "set")
                && acl::allows(&u.commands, "get")
        })
        .unwrap_or_else(|| spec.operator_user())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_app_writes() {
        let spec = crate::redis::test_spec::reference();
        assert_eq!(data_writer(&spec).name, "app");
    }
}
