//! Content limits: how many attribute values one resource may hold, how long
//! a string value may be, and how many group members one request may name.
//!
//! They are checked on the normalised document, so POST, PUT, PATCH and Bulk
//! meet the same rules, and a run of PATCHes cannot grow a resource past
//! what a single POST could store. Size and nesting of the request body are
//! bounded earlier, while it is read (`http::body`).

use serde_json::{Map, Value};

use super::normalize::Normalized;
use crate::config::ScimSettings;
use crate::error::ScimError;

/// The content limits configured in `[scim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentLimits {
    /// Most simple values in one resource (group members excluded).
    pub max_attributes: usize,
    /// Longest string value, in characters.
    pub max_string_length: usize,
    /// Most member references in one request.
    pub max_members: usize,
}

impl ContentLimits {
    /// The limits configured in `[scim]`.
    pub fn from_settings(s: &ScimSettings) -> Self {
        Self {
            max_attributes: s.max_attributes,
            max_string_length: s.max_string_length,
            max_members: s.max_members_per_request,
        }
    }

    /// Checks a normalised POST or PUT body: its document and its members.
    pub fn check(&self, n: &Normalized) -> Result<(), ScimError> {
        self.check_document(&n.doc)?;
        self.check_members(n.members.as_ref().map_or(0, Vec::len))
    }

    /// Checks the number of values and the length of every string
    /// (`schemas` aside).
    pub fn check_document(&self, doc: &Map<String, Value>) -> Result<(), ScimError> {
        let mut count = 0usize;
        // `schemas` holds the server's own canonical URNs, not client data.
        for (name, value) in doc.iter().filter(|(k, _)| *k != "schemas") {
            self.walk(name, value, &mut count)?;
        }
        Ok(())
    }

    /// Checks how many member references one request names.
    pub fn check_members(&self, count: usize) -> Result<(), ScimError> {
        if count > self.max_members {
            return Err(ScimError::invalid_value(format!(
                "At most {} group members may be named in one request; split the change.",
                self.max_members
            )));
        }
        Ok(())
    }

    fn walk(&self, name: &str, value: &Value, count: &mut usize) -> Result<(), ScimError> {
        match value {
            Value::Null => Ok(()),
            Value::Array(items) => items.iter().try_for_each(|v| self.walk(name, v, count)),
            Value::Object(m) => m.iter().try_for_each(|(k, v)| self.walk(k, v, count)),
            Value::String(s) => {
                // Characters never outnumber bytes: count them only when needed.
                if s.len() > self.max_string_length && s.chars().count() > self.max_string_length {
                    return Err(ScimError::invalid_value(format!(
                        "Attribute '{name}' is longer than {} characters.",
                        self.max_string_length
                    )));
                }
                self.tally(count)
            }
            Value::Bool(_) | Value::Number(_) => self.tally(count),
        }
    }

    fn tally(&self, count: &mut usize) -> Result<(), ScimError> {
        *count += 1;
        if *count > self.max_attributes {
            return Err(ScimError::invalid_value(format!(
                "A resource may hold at most {} attribute values.",
                self.max_attributes
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> ContentLimits {
        ContentLimits {
            max_attributes: 5,
            max_string_length: 4,
            max_members: 2,
        }
    }

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn values_are_counted_through_complex_and_multi_valued_attributes() {
        let ok = doc(json!({"a": "x", "emails": [{"value": "y", "type": "w"}, {"value": "z"}]}));
        assert!(limits().check_document(&ok).is_ok());
        let over = doc(
            json!({"a": "x", "b": 1, "emails": [{"value": "y", "type": "w"}, {"value": "z", "primary": true}]}),
        );
        let e = limits().check_document(&over).unwrap_err();
        assert_eq!(e.scim_type().map(|t| t.as_str()), Some("invalidValue"));
        // Nulls are no values, and `schemas` is the server's own.
        let schemas =
            doc(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "a": "x"}));
        assert!(limits().check_document(&schemas).is_ok());
        let nulls = doc(json!({"a": null, "b": [null, null, null, null, null, null]}));
        assert!(limits().check_document(&nulls).is_ok());
    }

    #[test]
    fn strings_are_measured_in_characters_and_named_in_the_error() {
        assert!(limits().check_document(&doc(json!({"a": "éééé"}))).is_ok());
        let e = limits()
            .check_document(&doc(json!({"name": {"givenName": "abcde"}})))
            .unwrap_err();
        assert!(e.detail().contains("givenName"), "{}", e.detail());
        assert_eq!(e.scim_type().map(|t| t.as_str()), Some("invalidValue"));
    }

    #[test]
    fn members_over_the_limit_are_invalid_value() {
        assert!(limits().check_members(2).is_ok());
        let e = limits().check_members(3).unwrap_err();
        assert_eq!(e.scim_type().map(|t| t.as_str()), Some("invalidValue"));
    }
}
