//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5) with the schema's
//! `returned` rules: `always` survives exclusion, `never` is never shown,
//! `request` only when asked for by name.

use serde_json::{Map, Value};

use super::path::{Target, parse_attr_path, resolve};
use super::schema::{AttrDef, ResourceType, Returned, SchemaDef};

/// A parsed projection.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    include: Vec<Key>,
    exclude: Vec<Key>,
}

/// A resolved attribute reference: (extension URN or "", attribute, sub-attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    ext: String,
    attr: Option<String>,
    sub: Option<String>,
}

impl Projection {
    /// Parses comma-separated attribute lists; names that are not defined are ignored.
    pub fn parse(rt: &ResourceType, attributes: Option<&str>, excluded: Option<&str>) -> Self {
        Projection {
            include: keys(rt, attributes),
            exclude: keys(rt, excluded),
        }
    }

    /// Whether neither `attributes` nor `excludedAttributes` named anything.
    pub fn is_default(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether a top-level core attribute will be in the output (so callers
    /// can skip loading group members or a user's groups).
    pub fn wants(&self, rt: &ResourceType, name: &str) -> bool {
        let Some(def) = rt.schema.attr(name) else {
            return false;
        };
        self.keep_attr("", def).is_some()
    }

    /// Whether `name` is explicitly listed in `attributes`.
    pub fn asks_for(&self, name: &str) -> bool {
        self.include.iter().any(|k| {
            k.ext.is_empty()
                && k.attr
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(name))
        })
    }

    /// Applies the projection to a rendered resource.
    pub fn apply(&self, rt: &ResourceType, doc: &mut Map<String, Value>) {
        let keys: Vec<String> = doc.keys().cloned().collect();
        for key in keys {
            if key == "schemas" {
                continue;
            }
            if let Some(ext) = rt.extension(&key) {
                self.apply_extension(ext, doc, &key);
                continue;
            }
            let def = rt
                .schema
                .attr(&key)
                .or_else(|| rt.common.iter().find(|a| a.name == key));
            let Some(def) = def else {
                doc.remove(&key);
                continue;
            };
            self.apply_attr(doc, "", def);
        }
    }

    fn apply_extension(&self, ext: &SchemaDef, doc: &mut Map<String, Value>, key: &str) {
        let Some(Value::Object(inner)) = doc.get_mut(key) else {
            return;
        };
        let names: Vec<String> = inner.keys().cloned().collect();
        for name in names {
            match ext.attr(&name) {
                Some(def) => self.apply_attr(inner, &ext.id, def),
                None => {
                    inner.remove(&name);
                }
            }
        }
        if inner.is_empty() {
            doc.remove(key);
        }
    }

    fn apply_attr(&self, container: &mut Map<String, Value>, ext: &str, def: &AttrDef) {
        match self.keep_attr(ext, def) {
            None => {
                container.remove(&def.name);
            }
            Some(SubFilter::All(listed)) => {
                if let Some(v) = container.get_mut(&def.name) {
                    for el in elements_mut(v) {
                        el.retain(|k, _| {
                            def.sub(k).is_none_or(|s| shown_by_default(s.returned))
                                || listed.iter().any(|l| l.eq_ignore_ascii_case(k))
                        });
                    }
                }
            }
            Some(SubFilter::Only(subs)) => {
                if let Some(v) = container.get_mut(&def.name) {
                    for el in elements_mut(v) {
                        el.retain(|k, _| {
                            subs.iter().any(|s| s.eq_ignore_ascii_case(k))
                                || def.sub(k).is_some_and(|s| s.returned == Returned::Always)
                        });
                    }
                }
            }
            Some(SubFilter::Except(subs)) => {
                if let Some(v) = container.get_mut(&def.name) {
                    for el in elements_mut(v) {
                        el.retain(|k, _| {
                            let returned = def.sub(k).map_or(Returned::Default, |s| s.returned);
                            returned == Returned::Always
                                || (!subs.iter().any(|s| s.eq_ignore_ascii_case(k))
                                    && shown_by_default(returned))
                        });
                    }
                }
            }
        }
    }

    fn keep_attr(&self, ext: &str, def: &AttrDef) -> Option<SubFilter> {
        match def.returned {
            Returned::Never => return None,
            Returned::Always => return Some(SubFilter::All(Vec::new())),
            _ => {}
        }
        let matches = |k: &Key| {
            k.ext.eq_ignore_ascii_case(ext)
                && k.attr
                    .as_deref()
                    .is_none_or(|a| a.eq_ignore_ascii_case(&def.name))
        };
        if !self.include.is_empty() {
            let hits: Vec<&Key> = self.include.iter().filter(|k| matches(k)).collect();
            if hits.is_empty() {
                return None;
            }
            if hits.iter().any(|k| k.attr.is_none() || k.sub.is_none()) {
                if def.returned == Returned::Request && !hits.iter().any(|k| k.attr.is_some()) {
                    return None;
                }
                return Some(SubFilter::All(
                    hits.iter().filter_map(|k| k.sub.clone()).collect(),
                ));
            }
            return Some(SubFilter::Only(
                hits.iter().filter_map(|k| k.sub.clone()).collect(),
            ));
        }
        if def.returned == Returned::Request {
            return None;
        }
        let hits: Vec<&Key> = self.exclude.iter().filter(|k| matches(k)).collect();
        if hits.iter().any(|k| k.attr.is_none() || k.sub.is_none()) {
            return None;
        }
        if hits.is_empty() {
            Some(SubFilter::All(Vec::new()))
        } else {
            Some(SubFilter::Except(
                hits.iter().filter_map(|k| k.sub.clone()).collect(),
            ))
        }
    }
}

/// Whether a sub-attribute appears when its parent is returned whole.
pub(super) fn shown_by_default(returned: Returned) -> bool {
    matches!(returned, Returned::Always | Returned::Default)
}

enum SubFilter {
    /// The whole attribute; request-only sub-attributes only when listed.
    All(Vec<String>),
    Only(Vec<String>),
    Except(Vec<String>),
}

fn elements_mut(v: &mut Value) -> Vec<&mut Map<String, Value>> {
    match v {
        Value::Object(m) => vec![m],
        Value::Array(items) => items.iter_mut().filter_map(|i| i.as_object_mut()).collect(),
        _ => Vec::new(),
    }
}

fn keys(rt: &ResourceType, list: Option<&str>) -> Vec<Key> {
    let Some(list) = list else { return Vec::new() };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let path = parse_attr_path(s).ok()?;
            match resolve(rt, &path)? {
                Target::Extension(ext) => Some(Key {
                    ext: ext.id.clone(),
                    attr: None,
                    sub: None,
                }),
                Target::Attr { ext, attr, sub } => Some(Key {
                    ext: ext.map(|e| e.id.clone()).unwrap_or_default(),
                    attr: Some(attr.name.clone()),
                    sub: sub.map(|s| s.name.clone()),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScimSettings;
    use crate::scim::schema::{ENTERPRISE_URN, Registry};
    use serde_json::json;

    fn doc() -> Map<String, Value> {
        json!({"schemas": ["s"], "id": "1", "userName": "a", "displayName": "A",
               "name": {"givenName": "G", "familyName": "F"},
               "emails": [{"value": "e", "type": "work"}],
               ENTERPRISE_URN: {"department": "D", "costCenter": "C"},
               "meta": {"resourceType": "User"}})
        .as_object()
        .cloned()
        .unwrap()
    }

    fn project(attrs: Option<&str>, excl: Option<&str>) -> Value {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        let mut d = doc();
        Projection::parse(&reg.user, attrs, excl).apply(&reg.user, &mut d);
        Value::Object(d)
    }

    #[test]
    fn attributes_keep_only_what_is_listed_plus_always() {
        assert_eq!(
            project(Some("userName,name.givenName"), None),
            json!({"schemas": ["s"], "id": "1", "userName": "a", "name": {"givenName": "G"}})
        );
        assert_eq!(
            project(Some(&format!("{ENTERPRISE_URN}:department")), None),
            json!({"schemas": ["s"], "id": "1", ENTERPRISE_URN: {"department": "D"}})
        );
    }

    #[test]
    fn excluded_attributes_never_drop_id() {
        let v = project(None, Some("id,emails,name.familyName,meta"));
        assert_eq!(v["id"], "1");
        assert!(v.get("emails").is_none());
        assert!(v.get("meta").is_none());
        assert_eq!(v["name"], json!({"givenName": "G"}));
        assert_eq!(v["userName"], "a");
    }
}
