//! Attribute mapping: how an identity becomes an app's account.
//!
//! Each entry names an account attribute (a dotted path, optionally behind an
//! extension URN) and where its value comes from: a source path in the SCIM
//! path language (`emails[type eq "work"].value`), several joined, or a
//! constant, with a default and a string transform. With no entries the
//! identity passes through as it is, minus what is the gateway's own
//! (`id`, `meta`, the computed `groups`).

use scim_v2::filter::PatchPath;
use serde_json::{Map, Value};

use crate::config::{MappingRule, MappingSpec};
use crate::scim::filter::val_matches;
use crate::scim::path::{Target, container, resolve};
use crate::scim::schema::ResourceType;

/// A string transform.
#[derive(Debug, Clone, Copy)]
enum Transform {
    Lower,
    Upper,
    Trim,
}

impl Transform {
    fn apply(self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(match self {
                Transform::Lower => s.to_lowercase(),
                Transform::Upper => s.to_uppercase(),
                Transform::Trim => s.trim().to_string(),
            }),
            Value::Array(items) => Value::Array(items.into_iter().map(|i| self.apply(i)).collect()),
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
enum Source {
    Path(PatchPath),
    Join(Vec<PatchPath>, String),
    Const(Value),
}

#[derive(Debug, Clone)]
struct Entry {
    target: Vec<String>,
    source: Source,
    default: Option<Value>,
    transform: Option<Transform>,
}

/// A compiled mapping.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    entries: Vec<Entry>,
}

/// Parses a source attribute path and checks it against the schema.
pub fn parse_source(rt: &ResourceType, s: &str) -> anyhow::Result<PatchPath> {
    let path: PatchPath = s
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("'{s}' is not a SCIM attribute path"))?;
    let attr = match &path {
        PatchPath::Attr(p) => p,
        PatchPath::Value(vp) => &vp.attr,
    };
    // `id` and `meta.*` are common attributes every resource has.
    let common = attr.uri.is_none() && matches!(attr.name.to_ascii_lowercase().as_str(), "id");
    anyhow::ensure!(
        common || resolve(rt, attr).is_some(),
        "'{s}' names no {} attribute",
        rt.name
    );
    Ok(path)
}

/// Splits an account attribute path into object keys: an extension URN is
/// one key (`urn:…:User`), the rest splits at dots.
fn target_keys(path: &str) -> anyhow::Result<Vec<String>> {
    let path = path.trim();
    anyhow::ensure!(!path.is_empty(), "a mapping has an empty attribute name");
    if path.starts_with("urn:") {
        let (urn, rest) = path
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("'{path}' is not an extension attribute path"))?;
        let mut keys = vec![urn.to_string()];
        keys.extend(rest.split('.').map(str::to_string));
        anyhow::ensure!(
            keys.iter().all(|k| !k.is_empty()),
            "'{path}' has an empty part"
        );
        return Ok(keys);
    }
    let keys: Vec<String> = path.split('.').map(str::to_string).collect();
    anyhow::ensure!(
        keys.iter().all(|k| !k.is_empty()),
        "'{path}' has an empty part"
    );
    Ok(keys)
}

impl Mapping {
    /// Compiles a mapping, checking every source path against the schema.
    pub fn compile(
        rt: &ResourceType,
        spec: &std::collections::BTreeMap<String, MappingSpec>,
    ) -> anyhow::Result<Self> {
        let mut entries = Vec::with_capacity(spec.len());
        for (target, spec) in spec {
            let rule = match spec {
                MappingSpec::Path(p) => MappingRule {
                    from: Some(p.clone()),
                    ..MappingRule::default()
                },
                MappingSpec::Rule(r) => (**r).clone(),
            };
            let source = match (&rule.from, &rule.join, &rule.value) {
                (Some(p), None, None) => Source::Path(parse_source(rt, p)?),
                (None, Some(paths), None) => Source::Join(
                    paths
                        .iter()
                        .map(|p| parse_source(rt, p))
                        .collect::<anyhow::Result<_>>()?,
                    rule.separator.clone().unwrap_or_else(|| " ".into()),
                ),
                (None, None, Some(v)) => Source::Const(v.clone()),
                _ => anyhow::bail!("mapping of '{target}': set exactly one of from, join or value"),
            };
            let transform = match rule.transform.as_deref() {
                None => None,
                Some("lower") => Some(Transform::Lower),
                Some("upper") => Some(Transform::Upper),
                Some("trim") => Some(Transform::Trim),
                Some(other) => anyhow::bail!(
                    "mapping of '{target}': unknown transform '{other}' (lower, upper, trim)"
                ),
            };
            entries.push(Entry {
                target: target_keys(target)?,
                source,
                default: rule.default.clone(),
                transform,
            });
        }
        Ok(Self { entries })
    }

    /// Whether any source path reads the attribute `name` (e.g. `groups`).
    pub fn reads(&self, name: &str) -> bool {
        let named = |p: &PatchPath| match p {
            PatchPath::Attr(a) => a.name.eq_ignore_ascii_case(name),
            PatchPath::Value(vp) => vp.attr.name.eq_ignore_ascii_case(name),
        };
        self.entries.iter().any(|e| match &e.source {
            Source::Path(p) => named(p),
            Source::Join(ps, _) => ps.iter().any(named),
            Source::Const(_) => false,
        })
    }

    /// Maps a rendered identity (with `id`) to the account attributes. The
    /// result has no `schemas`, `id` or `meta`; the caller adds what the app needs.
    pub fn apply(&self, rt: &ResourceType, doc: &Map<String, Value>) -> Map<String, Value> {
        if self.entries.is_empty() {
            let mut out = doc.clone();
            for k in ["id", "meta", "groups", "schemas", "password"] {
                out.remove(k);
            }
            return out;
        }
        let root = Value::Object(doc.clone());
        let mut out = Map::new();
        for e in &self.entries {
            let value = match &e.source {
                Source::Path(p) => read(rt, p, &root),
                Source::Const(v) => Some(v.clone()),
                Source::Join(paths, sep) => {
                    let parts: Vec<String> = paths
                        .iter()
                        .filter_map(|p| read(rt, p, &root))
                        .filter_map(|v| match v {
                            Value::String(s) if !s.is_empty() => Some(s),
                            Value::Number(n) => Some(n.to_string()),
                            Value::Bool(b) => Some(b.to_string()),
                            _ => None,
                        })
                        .collect();
                    (!parts.is_empty()).then(|| Value::String(parts.join(sep)))
                }
            };
            let value = value.or_else(|| e.default.clone());
            let Some(mut value) = value else { continue };
            if let Some(t) = e.transform {
                value = t.apply(value);
            }
            set(&mut out, &e.target, value);
        }
        out
    }
}

fn set(out: &mut Map<String, Value>, keys: &[String], value: Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut node = out;
    for k in parents {
        let slot = node
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(m) = slot else { return };
        node = m;
    }
    node.insert(last.clone(), value);
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Reads a source path from a rendered identity.
pub fn read_path(rt: &ResourceType, path: &PatchPath, doc: &Value) -> Option<Value> {
    read(rt, path, doc)
}

fn read(rt: &ResourceType, path: &PatchPath, doc: &Value) -> Option<Value> {
    let out = match path {
        PatchPath::Attr(p) if p.uri.is_none() && p.name.eq_ignore_ascii_case("id") => {
            doc.get("id").cloned()
        }
        PatchPath::Attr(p) => match resolve(rt, p)? {
            Target::Extension(ext) => doc.get(&ext.id).cloned(),
            Target::Attr { ext, attr, sub } => {
                let top = container(doc, ext)?.get(&attr.name)?;
                match sub {
                    None => Some(top.clone()),
                    Some(sub) => match top {
                        Value::Array(items) => {
                            let vals: Vec<Value> = items
                                .iter()
                                .filter_map(|el| el.get(&sub.name).cloned())
                                .collect();
                            Some(Value::Array(vals))
                        }
                        other => other.get(&sub.name).cloned(),
                    },
                }
            }
        },
        PatchPath::Value(vp) => {
            let Some(Target::Attr {
                ext,
                attr,
                sub: None,
            }) = resolve(rt, &vp.attr)
            else {
                return None;
            };
            let items = container(doc, ext)?.get(&attr.name)?.as_array()?;
            let mut hits = items.iter().filter(|el| val_matches(attr, &vp.filter, el));
            match &vp.sub_attr {
                // `emails[type eq "work"].value`: the first match's value.
                Some(s) => {
                    let sub = attr.sub(s)?;
                    hits.find_map(|el| el.get(&sub.name).cloned())
                }
                None => Some(Value::Array(hits.cloned().collect())),
            }
        }
    };
    out.filter(present)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimSettings;
    use crate::scim::schema::Registry;
    use serde_json::json;

    fn compile(spec: &str) -> (Registry, Mapping) {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        let table: std::collections::BTreeMap<String, MappingSpec> = toml::from_str(spec).unwrap();
        let m = Mapping::compile(&reg.user, &table).unwrap();
        (reg, m)
    }

    fn user() -> Map<String, Value> {
        json!({
            "id": "u1",
            "userName": "Ada@Example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "home@x.org", "type": "home"}, {"value": "ada@corp.com", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            "meta": {"resourceType": "User"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn passthrough_drops_gateway_attributes() {
        let (reg, m) = compile("");
        let out = m.apply(&reg.user, &user());
        assert!(out.get("id").is_none() && out.get("meta").is_none());
        assert_eq!(out["userName"], "Ada@Example.com");
    }

    #[test]
    fn paths_filters_joins_constants_and_transforms() {
        let (reg, m) = compile(
            r#"
            login = { from = "userName", transform = "lower" }
            mail = 'emails[type eq "work"].value'
            "display" = { join = ["name.givenName", "name.familyName"] }
            "org.unit" = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
            "urn:example:app:1.0:Account:tier" = { value = "gold" }
            title = { from = "title", default = "none" }
            ref = "id"
            "#,
        );
        let out = Value::Object(m.apply(&reg.user, &user()));
        assert_eq!(out["login"], "ada@example.com");
        assert_eq!(out["mail"], "ada@corp.com");
        assert_eq!(out["display"], "Ada Lovelace");
        assert_eq!(out["org"]["unit"], "R&D");
        assert_eq!(out["urn:example:app:1.0:Account"]["tier"], "gold");
        assert_eq!(out["title"], "none");
        assert_eq!(out["ref"], "u1");
    }

    #[test]
    fn bad_mappings_are_refused() {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        for bad in [
            r#"x = "noSuchAttribute""#,
            r#"x = { from = "userName", transform = "reverse" }"#,
            r#"x = { from = "userName", value = 1 }"#,
            "x = 'emails[type eq'",
        ] {
            let table: std::collections::BTreeMap<String, MappingSpec> =
                toml::from_str(bad).unwrap();
            assert!(Mapping::compile(&reg.user, &table).is_err(), "{bad}");
        }
    }
}
