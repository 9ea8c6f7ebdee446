//! Requests checked as EC2 checks them, against EC2's own service model (botocore's
//! `ec2/2016-11-15/service-2.json`, in the moto venv): every parameter must be a member of the
//! action's input (`UnknownParameter`), every required member present (`MissingParameter`),
//! every value of its type and enum (`InvalidParameterValue`), every filter name one the
//! action's documentation lists (`InvalidParameterValue`, "The filter … is invalid"). moto
//! accepts all of these.
//!
//! Parameters are read back the way the EC2 query protocol writes them: a member by its
//! `queryName`, else its `locationName` capitalised, else its own name; lists flattened as
//! `Name.1`, `Name.2`; structures as `Name.Member`.

use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// An EC2 error for a request the model refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

pub struct Model {
    shapes: serde_json::Map<String, Value>,
    /// action → its input shape
    inputs: HashMap<String, String>,
    /// action → the filter names its documentation lists (when it takes filters)
    filters: HashMap<String, HashSet<String>>,
}

/// The parameters as a tree (`Filter.1.Name` → Filter → 1 → Name).
#[derive(Debug)]
enum Node {
    Leaf(String),
    Map(BTreeMap<String, Node>),
}

fn tree(params: &[(String, String)]) -> Node {
    let mut root = BTreeMap::new();
    for (k, v) in params {
        if k == "Action" || k == "Version" {
            continue;
        }
        let parts: Vec<&str> = k.split('.').collect();
        let mut map = &mut root;
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                map.insert(p.to_string(), Node::Leaf(v.clone()));
            } else {
                let entry = map
                    .entry(p.to_string())
                    .or_insert_with(|| Node::Map(BTreeMap::new()));
                if let Node::Leaf(_) = entry {
                    *entry = Node::Map(BTreeMap::new());
                }
                let Node::Map(m) = entry else { unreachable!() };
                map = m;
            }
        }
    }
    Node::Map(root)
}

fn filter_names(documentation: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut rest = documentation;
    while let Some(i) = rest.find("<li>") {
        rest = &rest[i + 4..];
        let item = rest.trim_start().trim_start_matches("<p>").trim_start();
        if let Some(name) = item.strip_prefix("<code>")
            && let Some(end) = name.find("</code>")
        {
            out.insert(name[..end].replace("&lt;", "<").replace("&gt;", ">"));
        }
    }
    out
}

impl Model {
    /// Reads botocore's EC2 model from the moto venv (gzip, read with `gzip -dc`).
    pub fn load(venv: &Path) -> Result<Model> {
        let lib = venv.join("lib");
        let site = std::fs::read_dir(&lib)
            .with_context(|| format!("no {}", lib.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages/botocore/data/ec2/2016-11-15"))
            .find(|p| p.exists())
            .context("botocore's EC2 model is not in the moto venv")?;
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(site.join("service-2.json.gz"))
            .output()
            .context("cannot run gzip")?;
        anyhow::ensure!(out.status.success(), "gzip could not read the EC2 model");
        Model::parse(&out.stdout)
    }

    pub fn parse(json: &[u8]) -> Result<Model> {
        let v: Value = serde_json::from_slice(json).context("the EC2 model is not JSON")?;
        let shapes = v["shapes"]
            .as_object()
            .context("the EC2 model has no shapes")?
            .clone();
        let mut inputs = HashMap::new();
        let mut filters = HashMap::new();
        for (name, op) in v["operations"]
            .as_object()
            .context("the EC2 model has no operations")?
        {
            let Some(input) = op["input"]["shape"].as_str() else {
                continue;
            };
            inputs.insert(name.clone(), input.to_string());
            if let Some(doc) = shapes[input]["members"]["Filters"]["documentation"].as_str() {
                let names = filter_names(doc);
                if !names.is_empty() {
                    filters.insert(name.clone(), names);
                }
            }
        }
        Ok(Model {
            shapes,
            inputs,
            filters,
        })
    }

    /// The refusal EC2 would answer `params` of `action` with, if any. Actions the model does
    /// not know are left to moto.
    pub fn check(&self, action: &str, params: &[(String, String)]) -> Option<Refusal> {
        let input = self.inputs.get(action)?;
        if let Err(r) = self.structure(input, &tree(params), "") {
            return Some(r);
        }
        let names = self.filters.get(action)?;
        for (k, v) in params {
            if let Some(rest) = k.strip_prefix("Filter.")
                && rest.ends_with(".Name")
                && !names.contains(v.as_str())
                && !(v.starts_with("tag:")
                    && (names.contains("tag:<key>") || names.contains("tag")))
            {
                return Some(Refusal {
                    code: "InvalidParameterValue",
                    message: format!("The filter '{v}' is invalid"),
                });
            }
        }
        None
    }

    fn structure(&self, shape: &str, node: &Node, path: &str) -> Result<(), Refusal> {
        let def = &self.shapes[shape];
        let members = def["members"].as_object().cloned().unwrap_or_default();
        let by_query: HashMap<String, (&String, &Value)> = members
            .iter()
            .map(|(name, m)| (query_name(name, m), (name, m)))
            .collect();
        let Node::Map(children) = node else {
            return Err(invalid(path, node));
        };
        for (key, child) in children {
            let full = join(path, key);
            let Some((_, member)) = by_query.get(key) else {
                return Err(Refusal {
                    code: "UnknownParameter",
                    message: format!("The parameter {full} is not recognized"),
                });
            };
            self.value(member["shape"].as_str().unwrap_or_default(), child, &full)?;
        }
        for req in def["required"].as_array().into_iter().flatten() {
            let Some(req) = req.as_str() else { continue };
            let q = query_name(req, &members[req]);
            if !children.contains_key(&q) {
                return Err(Refusal {
                    code: "MissingParameter",
                    message: format!("The request must contain the parameter {}", join(path, &q)),
                });
            }
        }
        Ok(())
    }

    fn value(&self, shape: &str, node: &Node, path: &str) -> Result<(), Refusal> {
        let def = &self.shapes[shape];
        match (def["type"].as_str().unwrap_or_default(), node) {
            ("structure", _) => self.structure(shape, node, path),
            ("list", Node::Map(items)) => {
                let member = def["member"]["shape"].as_str().unwrap_or_default();
                for (i, item) in items {
                    if !i.parse::<u32>().is_ok_and(|n| n >= 1) {
                        return Err(Refusal {
                            code: "UnknownParameter",
                            message: format!("The parameter {} is not recognized", join(path, i)),
                        });
                    }
                    self.value(member, item, &join(path, i))?;
                }
                Ok(())
            }
            // An empty list is written as the bare name.
            ("list", Node::Leaf(v)) if v.is_empty() => Ok(()),
            (_, Node::Map(_)) => Err(invalid(path, node)),
            (t, Node::Leaf(v)) => {
                let ok = match t {
                    "integer" | "long" => v.parse::<i64>().is_ok(),
                    "boolean" => v == "true" || v == "false",
                    "double" | "float" => v.parse::<f64>().is_ok(),
                    "string" => def["enum"]
                        .as_array()
                        .is_none_or(|e| e.iter().any(|x| x.as_str() == Some(v.as_str()))),
                    _ => true,
                };
                if ok { Ok(()) } else { Err(invalid(path, node)) }
            }
        }
    }
}

fn query_name(name: &str, member: &Value) -> String {
    if let Some(q) = member["queryName"].as_str() {
        return q.to_string();
    }
    if let Some(l) = member["locationName"].as_str() {
        let mut c = l.chars();
        return match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => name.to_string(),
        };
    }
    name.to_string()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn invalid(path: &str, node: &Node) -> Refusal {
    let value = match node {
        Node::Leaf(v) => v.clone(),
        Node::Map(_) => "(a structure)".into(),
    };
    Refusal {
        code: "InvalidParameterValue",
        message: format!("Value ({value}) for parameter {path} is invalid."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::moto::params;

    /// A tiny model in botocore's form: RunThings (required Count, an enum, a list of
    /// structures with a locationName) and DescribeThings (documented filters).
    fn model() -> Model {
        Model::parse(
            br#"{"operations":{
              "RunThings":{"input":{"shape":"RunThingsRequest"}},
              "DescribeThings":{"input":{"shape":"DescribeThingsRequest"}}},
             "shapes":{
              "RunThingsRequest":{"type":"structure","required":["Count"],"members":{
                "Count":{"shape":"Integer"},
                "Kind":{"shape":"Kind"},
                "DryRun":{"shape":"Boolean","locationName":"dryRun"},
                "Mappings":{"shape":"MappingList","locationName":"Mapping"}}},
              "MappingList":{"type":"list","member":{"shape":"Mapping","locationName":"item"}},
              "Mapping":{"type":"structure","members":{"DeviceName":{"shape":"String"}}},
              "DescribeThingsRequest":{"type":"structure","members":{
                "Filters":{"shape":"FilterList","locationName":"Filter",
                  "documentation":"<p>The filters.</p> <ul> <li> <p> <code>vpc-id</code> - the VPC.</p> </li> <li> <p> <code>tag:&lt;key&gt;</code> - a tag.</p> </li> </ul>"}}},
              "FilterList":{"type":"list","member":{"shape":"Filter","locationName":"Filter"}},
              "Filter":{"type":"structure","members":{"Name":{"shape":"String"},
                "Values":{"shape":"ValueList","locationName":"Value"}}},
              "ValueList":{"type":"list","member":{"shape":"String","locationName":"item"}},
              "Kind":{"type":"string","enum":["small","large"]},
              "Integer":{"type":"integer"},"Boolean":{"type":"boolean"},"String":{"type":"string"}}}"#,
        )
        .unwrap()
    }

    fn check(action: &str, p: &[(&str, &str)]) -> Option<(&'static str, String)> {
        model()
            .check(action, &params(p))
            .map(|r| (r.code, r.message))
    }

    #[test]
    fn what_ec2_takes_passes() {
        assert_eq!(
            check(
                "RunThings",
                &[
                    ("Action", "RunThings"),
                    ("Count", "2"),
                    ("Kind", "small"),
                    ("DryRun", "false"),
                    ("Mapping.1.DeviceName", "/dev/sda1"),
                ]
            ),
            None
        );
        assert_eq!(
            check(
                "DescribeThings",
                &[
                    ("Filter.1.Name", "vpc-id"),
                    ("Filter.1.Value.1", "vpc-1"),
                    ("Filter.2.Name", "tag:redisctl:cluster"),
                    ("Filter.2.Value.1", "x"),
                ]
            ),
            None
        );
        assert_eq!(check("UnknownAction", &[("Anything", "x")]), None);
    }

    #[test]
    fn what_ec2_refuses_is_refused() {
        let r = check("RunThings", &[("Kind", "small")]).unwrap();
        assert_eq!(r.0, "MissingParameter");
        assert!(r.1.contains("Count"), "{}", r.1);
        let r = check("RunThings", &[("Count", "1"), ("Colour", "red")]).unwrap();
        assert_eq!(
            r,
            (
                "UnknownParameter",
                "The parameter Colour is not recognized".into()
            )
        );
        let r = check("RunThings", &[("Count", "one")]).unwrap();
        assert_eq!(r.0, "InvalidParameterValue");
        let r = check("RunThings", &[("Count", "1"), ("Kind", "huge")]).unwrap();
        assert_eq!(r.0, "InvalidParameterValue");
        assert!(r.1.contains("Kind"), "{}", r.1);
        let r = check("RunThings", &[("Count", "1"), ("DryRun", "yes")]).unwrap();
        assert_eq!(r.0, "InvalidParameterValue");
        let r = check("RunThings", &[("Count", "1"), ("Mapping.1.Size", "8")]).unwrap();
        assert_eq!(r.1, "The parameter Mapping.1.Size is not recognized");
        let r = check(
            "DescribeThings",
            &[("Filter.1.Name", "vpc"), ("Filter.1.Value.1", "x")],
        )
        .unwrap();
        assert_eq!(
            r,
            (
                "InvalidParameterValue",
                "The filter 'vpc' is invalid".into()
            )
        );
    }
}
