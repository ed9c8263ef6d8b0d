//! Account attribute paths as the adapters' configurations name them:
//! dotted (`name.givenName`), optionally behind an extension URN
//! (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`).

use serde_json::{Map, Value};

/// The value at an account attribute path: dotted (`name.givenName`),
/// optionally behind an extension URN (`urn:…:User:department`).
pub fn value_at<'a>(account: &'a Value, path: &str) -> Option<&'a Value> {
    let (mut cur, rest) = match path.strip_prefix("urn:") {
        Some(_) => {
            let (urn, attr) = path.rsplit_once(':')?;
            (account.get(urn)?, attr)
        }
        None => (account, path),
    };
    for part in rest.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Sets the value at an account attribute path, making objects on the way.
pub fn set_at(account: &mut Map<String, Value>, path: &str, v: Value) {
    let (mut cur, rest) = match path.strip_prefix("urn:").and(path.rsplit_once(':')) {
        Some((urn, attr)) => (
            account
                .entry(urn.to_string())
                .or_insert_with(|| Value::Object(Map::new())),
            attr,
        ),
        None => {
            let (first, rest) = path.split_once('.').unwrap_or((path, ""));
            if rest.is_empty() {
                account.insert(first.to_string(), v);
                return;
            }
            (
                account
                    .entry(first.to_string())
                    .or_insert_with(|| Value::Object(Map::new())),
                rest,
            )
        }
    };
    let parts: Vec<&str> = rest.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            obj.insert((*part).to_string(), v);
            return;
        }
        cur = obj
            .entry((*part).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_and_write_nested_and_extension_attributes() {
        let urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let account = json!({"name": {"givenName": "Ada"}, urn: {"department": "R&D"}});
        assert_eq!(value_at(&account, "name.givenName"), Some(&json!("Ada")));
        assert_eq!(
            value_at(&account, &format!("{urn}:department")),
            Some(&json!("R&D"))
        );
        assert_eq!(value_at(&account, "name.familyName"), None);
        let mut out = Map::new();
        set_at(&mut out, "name.givenName", json!("Ada"));
        set_at(&mut out, &format!("{urn}:department"), json!("R&D"));
        set_at(&mut out, "userName", json!("ada"));
        assert_eq!(Value::Object(out), {
            let mut a = account.clone();
            a["userName"] = json!("ada");
            a
        });
    }
}
