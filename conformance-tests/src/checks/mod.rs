//! The check table. Each area lives in its own file and exports a `CHECKS`
//! slice of `(name, fn)` entries; [`all`] concatenates them in run order:
//! RFC areas first, then optional features (ETags, Bulk; each check passes
//! trivially when the ServiceProviderConfig says unsupported), then the
//! replays of what Microsoft Entra ID and Okta really send. To add an area,
//! add a file with a `CHECKS` slice and list it here.

mod bulk;
mod bulk_rules;
mod discovery;
mod entra;
mod entra_groups;
mod entra_patch;
mod errors;
mod etag;
mod filter;
mod groups;
mod list;
mod okta;
mod okta_groups;
mod patch;
mod patch_members;
mod search;
mod users;

use crate::runner::Check;

/// Every check, in the order they run.
pub fn all() -> Vec<Check> {
    [
        discovery::CHECKS,
        users::CHECKS,
        groups::CHECKS,
        patch::CHECKS,
        patch_members::CHECKS,
        filter::CHECKS,
        list::CHECKS,
        search::CHECKS,
        errors::CHECKS,
        etag::CHECKS,
        bulk::CHECKS,
        bulk_rules::CHECKS,
        entra::CHECKS,
        entra_patch::CHECKS,
        entra_groups::CHECKS,
        okta::CHECKS,
        okta_groups::CHECKS,
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_area_prefixed() {
        let all = super::all();
        let names: HashSet<&str> = all.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), all.len(), "duplicate check name");
        for name in names {
            let (area, rest) = name.split_once('/').unwrap_or(("", ""));
            assert!(!area.is_empty() && !rest.is_empty(), "{name}");
            assert!(!name.contains(char::is_whitespace), "{name}");
        }
    }
}
