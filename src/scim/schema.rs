//! Schema registry: RFC 7643 §7 schema definitions loaded from `schemas/`
//! (built into the binary) and from an optional directory of extensions,
//! and the resource types (User, Group) that tie a core schema to its
//! extensions. Everything schema-driven — normalisation, projection, PATCH,
//! filters, discovery — asks this registry, never a hand-written struct.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use crate::config::ScimSettings;

/// URN of the core User schema.
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// URN of the core Group schema.
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// URN of the enterprise User extension.
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

const BUILTIN: [&str; 3] = [
    include_str!("../../schemas/user.json"),
    include_str!("../../schemas/group.json"),
    include_str!("../../schemas/enterprise_user.json"),
];

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Reference,
    Complex,
    Binary,
}

/// When an attribute may be written (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    ReadOnly,
    #[default]
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    Always,
    Never,
    #[default]
    Default,
    Request,
}

/// One attribute definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttrDef {
    /// Canonical name.
    pub name: String,
    /// Data type.
    #[serde(rename = "type")]
    pub kind: AttrType,
    /// Whether the attribute holds a list.
    #[serde(default)]
    pub multi_valued: bool,
    /// Whether a resource must carry it.
    #[serde(default)]
    pub required: bool,
    /// Whether string comparison is case-sensitive.
    #[serde(default)]
    pub case_exact: bool,
    /// Write rules.
    #[serde(default)]
    pub mutability: Mutability,
    /// Read rules.
    #[serde(default)]
    pub returned: Returned,
    /// `none`, `server` or `global`.
    #[serde(default)]
    pub uniqueness: Option<String>,
    /// Sub-attributes of a complex attribute.
    #[serde(default)]
    pub sub_attributes: Vec<AttrDef>,
}

impl AttrDef {
    /// Finds a sub-attribute by name, case-insensitively.
    pub fn sub(&self, name: &str) -> Option<&AttrDef> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    fn simple(name: &str, kind: AttrType, mutability: Mutability, returned: Returned) -> Self {
        AttrDef {
            name: name.into(),
            kind,
            multi_valued: false,
            required: false,
            case_exact: true,
            mutability,
            returned,
            uniqueness: None,
            sub_attributes: Vec::new(),
        }
    }
}

/// One schema: its URN, its attributes, and the JSON it was loaded from.
#[derive(Debug)]
pub struct SchemaDef {
    /// The schema URN.
    pub id: String,
    /// Short name.
    pub name: String,
    /// Top-level attributes.
    pub attributes: Vec<AttrDef>,
    /// The definition as loaded, served by `/Schemas`.
    pub raw: Value,
}

impl SchemaDef {
    /// Parses one RFC 7643 §7 schema definition.
    pub fn parse(raw: Value) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        struct Head {
            id: String,
            #[serde(default)]
            name: Option<String>,
            attributes: Vec<AttrDef>,
        }
        let head: Head = serde_json::from_value(raw.clone())?;
        anyhow::ensure!(head.id.starts_with("urn:"), "schema id must be a URN");
        Ok(SchemaDef {
            name: head.name.unwrap_or_else(|| head.id.clone()),
            id: head.id,
            attributes: head.attributes,
            raw,
        })
    }

    /// Finds a top-level attribute by name, case-insensitively.
    pub fn attr(&self, name: &str) -> Option<&AttrDef> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A resource type: a core schema and its extensions.
#[derive(Debug)]
pub struct ResourceType {
    /// `User` or `Group`.
    pub name: &'static str,
    /// Endpoint path segment, `/Users` or `/Groups`.
    pub endpoint: &'static str,
    /// The core schema.
    pub schema: Arc<SchemaDef>,
    /// Extension schemas and whether each is required.
    pub extensions: Vec<(Arc<SchemaDef>, bool)>,
    /// `id`, `externalId` and `meta` (RFC 7643 §3.1), common to every resource.
    pub common: Vec<AttrDef>,
}

/// Where a resolved attribute lives in a resource document.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The extension the attribute belongs to, or `None` for core and common attributes.
    pub extension: Option<&'a SchemaDef>,
    /// The top-level attribute.
    pub attr: &'a AttrDef,
    /// The sub-attribute, when the path names one.
    pub sub: Option<&'a AttrDef>,
}

impl ResourceType {
    /// Whether this is the Group resource type.
    pub fn is_group(&self) -> bool {
        self.name == "Group"
    }

    /// Finds an extension by URN, case-insensitively.
    pub fn extension(&self, urn: &str) -> Option<&SchemaDef> {
        self.extensions
            .iter()
            .map(|(s, _)| s.as_ref())
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// Resolves `[uri:]name[.sub]`, case-insensitively, to its definition.
    /// A `uri` equal to the core schema's URN is the same as none.
    pub fn resolve(
        &self,
        uri: Option<&str>,
        name: &str,
        sub: Option<&str>,
    ) -> Option<Resolved<'_>> {
        let (extension, attr) = match uri {
            Some(u) if !u.eq_ignore_ascii_case(&self.schema.id) => {
                let ext = self.extension(u)?;
                (Some(ext), ext.attr(name)?)
            }
            _ => (
                None,
                self.schema.attr(name).or_else(|| {
                    self.common
                        .iter()
                        .find(|a| a.name.eq_ignore_ascii_case(name))
                })?,
            ),
        };
        let sub = match sub {
            Some(s) => Some(attr.sub(s)?),
            None => None,
        };
        Some(Resolved {
            extension,
            attr,
            sub,
        })
    }

    /// Every schema URN a resource of this type may list in `schemas`.
    pub fn schema_urns(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.schema.id.as_str())
            .chain(self.extensions.iter().map(|(s, _)| s.id.as_str()))
    }
}

fn common_attributes() -> Vec<AttrDef> {
    use AttrType::*;
    let mut meta = AttrDef::simple("meta", Complex, Mutability::ReadOnly, Returned::Default);
    meta.sub_attributes = vec![
        AttrDef::simple(
            "resourceType",
            String,
            Mutability::ReadOnly,
            Returned::Default,
        ),
        AttrDef::simple("created", DateTime, Mutability::ReadOnly, Returned::Default),
        AttrDef::simple(
            "lastModified",
            DateTime,
            Mutability::ReadOnly,
            Returned::Default,
        ),
        AttrDef::simple(
            "location",
            Reference,
            Mutability::ReadOnly,
            Returned::Default,
        ),
        AttrDef::simple("version", String, Mutability::ReadOnly, Returned::Default),
    ];
    vec![
        AttrDef::simple("id", String, Mutability::ReadOnly, Returned::Always),
        AttrDef::simple(
            "externalId",
            String,
            Mutability::ReadWrite,
            Returned::Default,
        ),
        meta,
    ]
}

/// All schemas and resource types the server implements.
#[derive(Debug)]
pub struct Registry {
    /// Every loaded schema, served by `/Schemas`.
    pub schemas: Vec<Arc<SchemaDef>>,
    /// The User resource type.
    pub user: ResourceType,
    /// The Group resource type.
    pub group: ResourceType,
}

impl Registry {
    /// Loads the built-in schemas, then any in `settings.schemas_dir`, and
    /// attaches extensions as configured (the enterprise extension always
    /// extends User; an unconfigured extra schema extends User too).
    pub fn load(settings: &ScimSettings) -> anyhow::Result<Self> {
        let mut schemas = Vec::new();
        for text in BUILTIN {
            schemas.push(Arc::new(SchemaDef::parse(serde_json::from_str(text)?)?));
        }
        let mut extra = Vec::new();
        if let Some(dir) = &settings.schemas_dir {
            for schema in load_dir(dir)? {
                anyhow::ensure!(
                    !schemas
                        .iter()
                        .any(|s: &Arc<SchemaDef>| s.id.eq_ignore_ascii_case(&schema.id)),
                    "schema {} is defined twice",
                    schema.id
                );
                extra.push(schema.id.clone());
                schemas.push(Arc::new(schema));
            }
        }
        let find = |urn: &str| -> anyhow::Result<Arc<SchemaDef>> {
            schemas
                .iter()
                .find(|s| s.id.eq_ignore_ascii_case(urn))
                .cloned()
                .with_context(|| format!("schema {urn} is not loaded"))
        };
        let mut user = ResourceType {
            name: "User",
            endpoint: "/Users",
            schema: find(USER_URN)?,
            extensions: vec![(find(ENTERPRISE_URN)?, false)],
            common: common_attributes(),
        };
        let mut group = ResourceType {
            name: "Group",
            endpoint: "/Groups",
            schema: find(GROUP_URN)?,
            extensions: Vec::new(),
            common: common_attributes(),
        };
        for ext in &settings.extensions {
            let schema = find(&ext.schema)?;
            let target = match ext.resource_type.as_str() {
                "User" => &mut user,
                "Group" => &mut group,
                other => anyhow::bail!("extension {}: unknown resource type {other}", ext.schema),
            };
            target
                .extensions
                .retain(|(s, _)| !s.id.eq_ignore_ascii_case(&schema.id));
            target.extensions.push((schema, ext.required));
        }
        for urn in extra {
            let attached = user.extension(&urn).is_some() || group.extension(&urn).is_some();
            if !attached {
                user.extensions.push((find(&urn)?, false));
            }
        }
        Ok(Registry {
            schemas,
            user,
            group,
        })
    }

    /// The resource types, in discovery order.
    pub fn resource_types(&self) -> [&ResourceType; 2] {
        [&self.user, &self.group]
    }

    /// A schema by URN, case-insensitively.
    pub fn schema(&self, urn: &str) -> Option<&SchemaDef> {
        self.schemas
            .iter()
            .map(|s| s.as_ref())
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }
}

fn load_dir(dir: &Path) -> anyhow::Result<Vec<SchemaDef>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading schema directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading schema {}", p.display()))?;
            let raw: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing schema {}", p.display()))?;
            SchemaDef::parse(raw).with_context(|| format!("in schema {}", p.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schemas_load_and_resolve_case_insensitively() {
        let reg = Registry::load(&ScimSettings::default()).unwrap();
        let r = reg.user.resolve(None, "USERNAME", None).unwrap();
        assert_eq!(r.attr.name, "userName");
        let r = reg.user.resolve(None, "name", Some("GIVENNAME")).unwrap();
        assert_eq!(r.sub.unwrap().name, "givenName");
        let r = reg
            .user
            .resolve(Some(&ENTERPRISE_URN.to_uppercase()), "department", None)
            .unwrap();
        assert!(r.extension.is_some());
        assert!(reg.user.resolve(None, "nope", None).is_none());
        assert_eq!(
            reg.user
                .resolve(None, "password", None)
                .unwrap()
                .attr
                .returned,
            Returned::Never
        );
        assert!(reg.group.resolve(None, "members", Some("value")).is_some());
        assert!(
            reg.user
                .resolve(None, "meta", Some("lastModified"))
                .is_some()
        );
    }

    #[test]
    fn extra_schema_dir_adds_an_extension() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("acme.json"),
            r#"{"id":"urn:acme:User","name":"Acme","attributes":[{"name":"badge","type":"string"}]}"#,
        )
        .unwrap();
        let settings = ScimSettings {
            schemas_dir: Some(dir.path().to_path_buf()),
            ..ScimSettings::default()
        };
        let reg = Registry::load(&settings).unwrap();
        assert!(
            reg.user
                .resolve(Some("urn:acme:User"), "badge", None)
                .is_some()
        );
    }
}
