//! Pure Redis knowledge: ACL rules and their evaluation, and (with the node layer) renderers of
//! redis.conf / users.acl and parsers of redis-cli output.

pub mod acl;
