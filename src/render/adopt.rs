//! `redisctl adopt`'s report: what is the spec's, what each becomes, what is left alone, and
//! what stops the adoption.

use crate::plan::adopt::Adoption;

/// The report, before the plan of the first apply and the question.
pub fn report(cluster: &str, vpc: &str, a: &Adoption) -> String {
    let mut out = String::new();
    if !a.claims.is_empty() {
        out.push_str(&format!(
            "The spec's resources in VPC {vpc}, to be tagged as cluster {cluster}'s:\n\n"
        ));
        let w_addr = a.claims.iter().map(|c| c.address.len()).max().unwrap_or(0);
        let w_id = a.claims.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for c in &a.claims {
            let name = c.tags.get("Name").map(String::as_str).unwrap_or("");
            let was = match &c.was_named {
                Some(w) if w == name => format!("Name {w}"),
                Some(w) => format!("Name {w} → {name}"),
                None => format!("Name → {name}"),
            };
            out.push_str(&format!(
                "  {:<w_addr$}  {:<w_id$}  {was}\n",
                c.address, c.id
            ));
        }
        let mut keys: Vec<&str> = a
            .claims
            .iter()
            .flat_map(|c| c.tags.keys().map(String::as_str))
            .filter(|k| *k != "Name")
            .collect();
        keys.sort();
        keys.dedup();
        out.push_str(&format!(
            "\n  Each gets the tags {} (their other tags are kept).\n",
            keys.join(", ")
        ));
    }
    if !a.left_alone.is_empty() {
        out.push_str("\nIn the VPC but not in the spec, left as they are (a destroy of the cluster cannot delete the VPC while they are in it):\n");
        for l in &a.left_alone {
            out.push_str(&format!("  {l}\n"));
        }
    }
    if !a.problems.is_empty() {
        out.push_str("\nCannot adopt; nothing was tagged:\n");
        for p in &a.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}
