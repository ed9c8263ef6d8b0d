//! The query engine as a client sees it: every operator, case rule, value
//! path, extension attribute, meta time, membership and boolean filter
//! selects the right users, whether the filter compiles to SQL exactly or
//! partly goes through the evaluator (long values, `title`, element-wise
//! `and`), and paging and sorting stay stable under a filter (startIndex
//! pages and cursor walks add up to the full list, in the same order).

use serde_json::{Value, json};

use crate::helpers::*;

/// A value longer than the attribute index keeps (512 bytes), with a tail
/// only the document holds.
fn long_display() -> String {
    format!("{}tail", "y".repeat(520))
}

fn long_user_name() -> String {
    format!("l{}", "x".repeat(600))
}

struct Directory {
    app: TestApp,
    /// userName → representation.
    users: Vec<Value>,
    group: String,
}

impl Directory {
    fn id(&self, user_name: &str) -> String {
        self.users
            .iter()
            .find(|u| u["userName"] == user_name)
            .map(|u| u["id"].as_str().unwrap().to_string())
            .unwrap()
    }

    fn created(&self, user_name: &str) -> String {
        self.users
            .iter()
            .find(|u| u["userName"] == user_name)
            .map(|u| u["meta"]["created"].as_str().unwrap().to_string())
            .unwrap()
    }
}

async fn directory() -> Directory {
    let app = spawn_app().await;
    let people = [
        json!({"userName": "bjensen", "externalId": "EXT-BJ", "displayName": "Babs Jensen",
               "title": "Tour Guide", "active": true,
               "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                          {"value": "babs@jensen.org", "type": "home"}],
               ENTERPRISE_USER: {"employeeNumber": "1001", "manager": {"value": "m-1"}}}),
        json!({"userName": "jsmith", "externalId": "ext-js", "title": "Engineer", "active": true,
               "emails": [{"value": "JSmith@Example.com", "type": "work"}],
               ENTERPRISE_USER: {"employeeNumber": "1002", "department": "Engineering"}}),
        json!({"userName": "mjones", "title": "Senior Engineer", "active": false,
               "emails": [{"value": "mary_jones@example.org", "type": "work"}]}),
        json!({"userName": "ÉLODIE", "displayName": "élodie 100%",
               "emails": [{"value": "elodie*[x]@mail.test", "type": "home"}]}),
        json!({"userName": "zadmin", "externalId": "ext-admin", "title": "Administrator",
               "active": true}),
        json!({"userName": long_user_name(), "displayName": long_display()}),
    ];
    let mut users = Vec::new();
    for p in people {
        users.push(app.create_user_from(p).await);
        // Distinct creation times, so `meta.created` cases have one answer.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let ids: Vec<String> = users
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    let group = app.create_group("Ops", &[&ids[0], &ids[2]]).await;
    Directory {
        app,
        users,
        group: group["id"].as_str().unwrap().to_string(),
    }
}

/// Lists `/Users` with `filter` and checks it selects exactly `want`
/// (userNames), that startIndex pages of two and a cursor walk of two add
/// up to the same list in the same order, and that totals agree.
async fn selects(d: &Directory, filter: &str, want: &[&str]) {
    let app = &d.app;
    let full = app
        .list_ok("/Users", &[("filter", filter), ("count", "100")])
        .await;
    let mut got = resource_field(&full, "userName");
    let order = got.clone();
    got.sort();
    let mut expected: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(got, expected, "{filter}");
    assert_eq!(full["totalResults"], json!(want.len()), "{filter}");

    let mut paged = Vec::new();
    let mut start = 1;
    loop {
        let page = app
            .list_ok(
                "/Users",
                &[
                    ("filter", filter),
                    ("count", "2"),
                    ("startIndex", &start.to_string()),
                ],
            )
            .await;
        assert_eq!(page["totalResults"], json!(want.len()), "{filter} @{start}");
        let names = resource_field(&page, "userName");
        if names.is_empty() {
            break;
        }
        paged.extend(names);
        start += 2;
    }
    assert_eq!(paged, order, "{filter}: startIndex pages");

    let mut walked = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let page = app
            .list_ok(
                "/Users",
                &[("filter", filter), ("count", "2"), ("cursor", &cursor)],
            )
            .await;
        assert_eq!(page["totalResults"], json!(want.len()), "{filter}");
        walked.extend(resource_field(&page, "userName"));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(walked, order, "{filter}: cursor walk");
}

#[tokio::test]
async fn every_operator_on_indexed_attributes_follows_the_case_rules() {
    let d = directory().await;
    let long = long_user_name();
    let long = long.as_str();
    let everyone = ["bjensen", "jsmith", "mjones", "ÉLODIE", "zadmin", long];
    for (filter, want) in [
        // userName is not caseExact: folded, also beyond ASCII.
        (r#"userName eq "BJENSEN""#, &["bjensen"][..]),
        (r#"userName eq "élodie""#, &["ÉLODIE"]),
        (
            r#"userName ne "bjensen""#,
            &["jsmith", "mjones", "ÉLODIE", "zadmin", long],
        ),
        (r#"userName sw "J""#, &["jsmith"]),
        (r#"userName ew "SEN""#, &["bjensen"]),
        (r#"userName co "ODI""#, &["ÉLODIE"]),
        (r#"userName lt "c""#, &["bjensen"]),
        (r#"userName ge "m""#, &["mjones", "ÉLODIE", "zadmin"]),
        (r#"userName gt "mjones""#, &["ÉLODIE", "zadmin"]),
        (r#"userName le "jsmith""#, &["bjensen", "jsmith"]),
        (r#"userName pr"#, &everyone),
        // externalId is caseExact.
        (r#"externalId eq "ext-bj""#, &[]),
        (r#"externalId eq "EXT-BJ""#, &["bjensen"]),
        (r#"externalId sw "ext-""#, &["jsmith", "zadmin"]),
        (r#"externalId co "X""#, &["bjensen"]),
        (r#"externalId gt "Z""#, &["jsmith", "zadmin"]),
        (
            r#"externalId ne "ext-js""#,
            &["bjensen", "mjones", "ÉLODIE", "zadmin", long],
        ),
        (r#"not (externalId pr)"#, &["mjones", "ÉLODIE", long]),
        // Wildcards of LIKE and GLOB are plain characters in a filter.
        (r#"emails.value co "_""#, &["mjones"]),
        (r#"emails.value co "%""#, &[]),
        (r#"emails.value co "*[x]""#, &["ÉLODIE"]),
        (r#"emails.value sw "mary_""#, &["mjones"]),
        (r#"displayName ew "0%""#, &["ÉLODIE"]),
        (r#"emails.value ew ".ORG""#, &["bjensen", "mjones"]),
        (r#"emails.value sw "JSMITH@""#, &["jsmith"]),
        (r#"emails eq "babs@jensen.org""#, &["bjensen"]),
        (r#"emails pr"#, &["bjensen", "jsmith", "mjones", "ÉLODIE"]),
        (r#"not (emails pr)"#, &["zadmin", long]),
        (r#"userName eq """#, &[]),
        (r#"userName sw """#, &everyone),
    ] {
        selects(&d, filter, want).await;
    }
}

#[tokio::test]
async fn values_longer_than_the_index_keeps_are_still_found() {
    let d = directory().await;
    let long = long_user_name();
    let cases = [
        // The tail lies beyond the 512 bytes the index holds.
        r#"displayName co "TAIL""#.to_string(),
        r#"displayName ew "tail""#.to_string(),
        r#"displayName sw "yyyy""#.to_string(),
        format!(r#"displayName eq "{}""#, long_display()),
        format!(r#"displayName sw "{}""#, &long_display()[..515]),
        format!(r#"userName eq "{}""#, long.to_uppercase()),
        format!(r#"userName co "{}""#, &long[1..]),
    ];
    for filter in &cases {
        selects(&d, filter, &[&long]).await;
    }
    selects(
        &d,
        &format!(r#"not (displayName eq "{}")"#, long_display()),
        &["bjensen", "jsmith", "mjones", "ÉLODIE", "zadmin"],
    )
    .await;
    selects(&d, &format!(r#"displayName eq "{}x""#, long_display()), &[]).await;
}

#[tokio::test]
async fn value_paths_match_within_one_element() {
    let d = directory().await;
    for (filter, want) in [
        (
            r#"emails[type eq "work" and value co "example"]"#,
            &["bjensen", "jsmith", "mjones"][..],
        ),
        (
            r#"emails[type eq "home"].value ew "jensen.org""#,
            &["bjensen"],
        ),
        (r#"emails[type eq "work"].value eq "babs@jensen.org""#, &[]),
        (r#"emails[type eq "home" and value co "example"]"#, &[]),
        (
            r#"emails[value sw "babs" or value sw "MARY"]"#,
            &["bjensen", "mjones"],
        ),
        (r#"emails[not (type eq "work")]"#, &["bjensen", "ÉLODIE"]),
        (
            r#"emails[value ne "babs@jensen.org"]"#,
            &["bjensen", "jsmith", "mjones", "ÉLODIE"],
        ),
        (r#"emails[primary eq true]"#, &["bjensen"]),
        (r#"emails.type eq "home""#, &["bjensen", "ÉLODIE"]),
    ] {
        selects(&d, filter, want).await;
    }
}

#[tokio::test]
async fn booleans_extensions_and_non_indexed_attributes_filter() {
    let d = directory().await;
    let long = long_user_name();
    let long = long.as_str();
    let urn = ENTERPRISE_USER;
    for (filter, want) in [
        (r#"active eq false"#.to_string(), &["mjones"][..]),
        (
            r#"active eq "True""#.to_string(),
            &["bjensen", "jsmith", "zadmin"],
        ),
        (r#"active ne true"#.to_string(), &["mjones", "ÉLODIE", long]),
        (
            r#"not (active eq false)"#.to_string(),
            &["bjensen", "jsmith", "ÉLODIE", "zadmin", long],
        ),
        (
            r#"active pr"#.to_string(),
            &["bjensen", "jsmith", "mjones", "zadmin"],
        ),
        (format!(r#"{urn}:employeeNumber eq "1002""#), &["jsmith"]),
        (
            format!(r#"{urn}:employeeNumber gt "1000""#),
            &["bjensen", "jsmith"],
        ),
        (format!(r#"{urn}:manager.value eq "m-1""#), &["bjensen"]),
        (format!(r#"{urn}:department co "engin""#), &["jsmith"]),
        (r#"title eq "engineer""#.to_string(), &["jsmith"]),
        (
            r#"title gt "Eng""#.to_string(),
            &["bjensen", "jsmith", "mjones"],
        ),
        (r#"title le "engineer""#.to_string(), &["jsmith", "zadmin"]),
        (
            r#"not (title pr) and not (active eq false)"#.to_string(),
            &["ÉLODIE", long],
        ),
        // Precedence: `and` binds tighter than `or`.
        (
            r#"userName eq "zadmin" or userName eq "jsmith" and active eq false"#.to_string(),
            &["zadmin"],
        ),
        (
            r#"(userName eq "zadmin" or userName eq "jsmith") and active eq true"#.to_string(),
            &["zadmin", "jsmith"],
        ),
        // One branch in SQL, one in the evaluator.
        (
            r#"title eq "engineer" or userName sw "b""#.to_string(),
            &["jsmith", "bjensen"],
        ),
        (
            r#"title co "engineer" and not (userName eq "mjones")"#.to_string(),
            &["jsmith"],
        ),
    ] {
        selects(&d, &filter, want).await;
    }
}

#[tokio::test]
async fn ids_times_and_memberships_filter_in_sql() {
    let d = directory().await;
    let long = long_user_name();
    let long = long.as_str();
    let mid = d.created("mjones");
    let bj = d.id("bjensen");
    for (filter, want) in [
        (format!(r#"id eq "{bj}""#), &["bjensen"][..]),
        (
            format!(r#"id ne "{bj}""#),
            &["jsmith", "mjones", "ÉLODIE", "zadmin", long],
        ),
        (format!(r#"id eq "{}""#, bj.to_uppercase()), &[]),
        (
            format!(r#"meta.created gt "{mid}""#),
            &["ÉLODIE", "zadmin", long],
        ),
        (
            format!(r#"meta.created le "{mid}""#),
            &["bjensen", "jsmith", "mjones"],
        ),
        (format!(r#"meta.created eq "{mid}""#), &["mjones"]),
        (
            format!(r#"meta.created lt "{mid}" or meta.created gt "{mid}""#),
            &["bjensen", "jsmith", "ÉLODIE", "zadmin", long],
        ),
        // Joining the group touched its members after everyone was created.
        (
            format!(r#"meta.lastModified gt "{}""#, d.created(long)),
            &["bjensen", "mjones"],
        ),
        (
            r#"meta.lastModified lt "2000-01-01T00:00:00Z""#.to_string(),
            &[],
        ),
        (
            r#"meta.lastModified gt "2000-01-01T02:00:00+02:00""#.to_string(),
            &["bjensen", "jsmith", "mjones", "ÉLODIE", "zadmin", long],
        ),
        (
            format!(r#"groups.value eq "{}""#, d.group),
            &["bjensen", "mjones"],
        ),
        (
            format!(r#"groups eq "{}""#, d.group),
            &["bjensen", "mjones"],
        ),
        (
            format!(r#"not (groups.value eq "{}")"#, d.group),
            &["jsmith", "ÉLODIE", "zadmin", long],
        ),
        (r#"groups pr"#.to_string(), &["bjensen", "mjones"]),
    ] {
        selects(&d, &filter, want).await;
    }
    // And groups by member.
    let app = &d.app;
    app.create_group("Empty", &[]).await;
    for (filter, want) in [
        (format!(r#"members.value eq "{bj}""#), vec!["Ops"]),
        (format!(r#"members eq "{}""#, d.id("jsmith")), vec![]),
        (format!(r#"not (members[value eq "{bj}"])"#), vec!["Empty"]),
        (r#"members pr"#.to_string(), vec!["Ops"]),
        (r#"displayName eq "ops""#.to_string(), vec!["Ops"]),
    ] {
        let list = app
            .list_ok(
                "/Groups",
                &[("filter", &filter), ("excludedAttributes", "members")],
            )
            .await;
        assert_eq!(resource_field(&list, "displayName"), want, "{filter}");
        assert_eq!(list["totalResults"], json!(want.len()), "{filter}");
    }
}

/// Pages of `count` by startIndex and by cursor, for a filter and sort.
async fn pages(app: &TestApp, query: &[(&str, &str)], count: usize) -> (Vec<String>, Vec<String>) {
    let count_s = count.to_string();
    let mut by_index = Vec::new();
    let mut start = 1;
    loop {
        let start_s = start.to_string();
        let mut q = query.to_vec();
        q.extend([
            ("count", count_s.as_str()),
            ("startIndex", start_s.as_str()),
        ]);
        let page = app.list_ok("/Users", &q).await;
        let names = resource_field(&page, "userName");
        if names.is_empty() {
            break;
        }
        by_index.extend(names);
        start += count;
    }
    let mut by_cursor = Vec::new();
    let mut cursor = String::new();
    let mut cursors = Vec::new();
    for _ in 0..20 {
        let mut q = query.to_vec();
        q.extend([("count", count_s.as_str()), ("cursor", cursor.as_str())]);
        let page = app.list_ok("/Users", &q).await;
        by_cursor.extend(resource_field(&page, "userName"));
        cursors.push(cursor.clone());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    // And back again with previousCursor from the last page.
    let mut q = query.to_vec();
    q.extend([("count", count_s.as_str()), ("cursor", cursor.as_str())]);
    let mut page = app.list_ok("/Users", &q).await;
    let mut back = resource_field(&page, "userName");
    while let Some(prev) = page["previousCursor"].as_str().map(str::to_string) {
        let mut q = query.to_vec();
        q.extend([("count", count_s.as_str()), ("cursor", prev.as_str())]);
        page = app.list_ok("/Users", &q).await;
        let mut names = resource_field(&page, "userName");
        names.extend(back);
        back = names;
    }
    assert_eq!(back, by_cursor, "{query:?}: previousCursor walk");
    (by_index, by_cursor)
}

#[tokio::test]
async fn sorting_under_a_filter_is_stable_across_pages_and_cursors() {
    let app = spawn_app().await;
    // Ties in the sort value: order falls back to creation, then id.
    for (name, title, active) in [
        ("u1", Some("B"), true),
        ("u2", Some("a"), true),
        ("u3", None, true),
        ("u4", Some("b"), false),
        ("u5", Some("A"), true),
        ("u6", Some("c"), true),
        ("u7", None, true),
    ] {
        let mut body =
            json!({"userName": name, "active": active, "displayName": name.to_uppercase()});
        if let Some(t) = title {
            body["title"] = json!(t);
        }
        app.create_user_from(body).await;
    }
    for (query, want) in [
        // In memory (title is not indexed), ties by creation.
        (
            vec![("filter", "active eq true"), ("sortBy", "title")],
            vec!["u2", "u5", "u1", "u6", "u3", "u7"],
        ),
        (
            vec![
                ("filter", "active eq true"),
                ("sortBy", "title"),
                ("sortOrder", "descending"),
            ],
            vec!["u3", "u7", "u6", "u1", "u2", "u5"],
        ),
        // In SQL (displayName is indexed).
        (
            vec![
                ("filter", r#"userName sw "u" and not (userName eq "u4")"#),
                ("sortBy", "displayName"),
                ("sortOrder", "descending"),
            ],
            vec!["u7", "u6", "u5", "u3", "u2", "u1"],
        ),
        (
            vec![
                ("filter", "title pr or active eq false"),
                ("sortBy", "meta.created"),
            ],
            vec!["u1", "u2", "u4", "u5", "u6"],
        ),
    ] {
        let full = app
            .list_ok("/Users", &[query.clone(), vec![("count", "100")]].concat())
            .await;
        assert_eq!(resource_field(&full, "userName"), want, "{query:?}");
        for count in [1, 2, 4] {
            let (by_index, by_cursor) = pages(&app, &query, count).await;
            assert_eq!(by_index, want, "{query:?} startIndex pages of {count}");
            assert_eq!(by_cursor, want, "{query:?} cursor pages of {count}");
        }
    }
}

#[tokio::test]
async fn paging_edges_under_a_filter() {
    let d = directory().await;
    let app = &d.app;
    let f = r#"emails pr"#;
    let page = app
        .list_ok("/Users", &[("filter", f), ("startIndex", "10")])
        .await;
    assert_eq!(page["totalResults"], json!(4));
    assert_eq!(page["Resources"], json!([]));
    let page = app
        .list_ok("/Users", &[("filter", f), ("count", "0")])
        .await;
    assert_eq!(page["totalResults"], json!(4));
    assert_eq!(page["itemsPerPage"], json!(0));
    let page = app
        .list_ok(
            "/Users",
            &[("filter", f), ("startIndex", "4"), ("count", "5")],
        )
        .await;
    assert_eq!(resource_field(&page, "userName"), ["ÉLODIE"]);
    assert_eq!(page["startIndex"], json!(4));
    // The same through the evaluator (title is not indexed).
    let page = app
        .list_ok(
            "/Users",
            &[("filter", "title pr"), ("startIndex", "4"), ("count", "5")],
        )
        .await;
    assert_eq!(page["totalResults"], json!(4));
    assert_eq!(resource_field(&page, "userName"), ["zadmin"]);
    let page = app
        .list_ok(
            "/Users",
            &[("filter", "title pr"), ("count", "0"), ("cursor", "")],
        )
        .await;
    assert_eq!(page["totalResults"], json!(4));
    assert!(page.get("nextCursor").is_none(), "{page}");
}

#[tokio::test]
async fn many_evaluator_matches_are_streamed_and_paged_like_the_rest() {
    let app = spawn_app().await;
    // 1200 users; every one but each tenth has the (non-indexed) title.
    for chunk in 0..2 {
        let ops: Vec<Value> = (chunk * 600..(chunk + 1) * 600)
            .map(|i| {
                let mut data = json!({"userName": format!("u{i:04}")});
                if i % 10 != 0 {
                    data["title"] = json!("x");
                }
                json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": data})
            })
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                          "Operations": ops});
        let res = app.post("/Bulk", &body).await;
        assert_eq!(res.status(), 200);
    }
    let want: Vec<String> = (0..1200)
        .filter(|i| i % 10 != 0 || *i == 0)
        .map(|i| format!("u{i:04}"))
        .collect();
    // More evaluator matches than are worth settling by id: streamed, with
    // `userName eq` decided in SQL for its row.
    let f = r#"title eq "X" or userName eq "u0000""#;
    let page = app
        .list_ok(
            "/Users",
            &[("filter", f), ("startIndex", "1000"), ("count", "5")],
        )
        .await;
    assert_eq!(page["totalResults"], json!(want.len()));
    assert_eq!(resource_field(&page, "userName"), want[999..1004]);
    let page = app
        .list_ok(
            "/Users",
            &[
                ("filter", f),
                ("sortBy", "userName"),
                ("sortOrder", "descending"),
                ("count", "3"),
            ],
        )
        .await;
    assert_eq!(
        resource_field(&page, "userName"),
        ["u1199", "u1198", "u1197"]
    );
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .list_ok(
                "/Users",
                &[("filter", f), ("count", "500"), ("cursor", &cursor)],
            )
            .await;
        assert_eq!(page["totalResults"], json!(want.len()));
        walked.extend(resource_field(&page, "userName"));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    // The walk goes in creation order, and users created in the same
    // millisecond follow their (random) ids: compare as sorted lists, so
    // every match still shows exactly once.
    walked.sort();
    assert_eq!(walked, want);
}
