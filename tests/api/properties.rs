//! Property tests through the API, on whichever database the suite runs
//! on: a PATCH applies completely or not at all (checked against the PATCH
//! engine run in memory), sending it again changes nothing, and a filter
//! selects through its compiled SQL (and the evaluator for what SQL cannot
//! decide) exactly what the in-memory evaluator alone selects on random
//! data: wildcard characters, values longer than the index keeps, value
//! paths, booleans, extension attributes, `not` and `ne` included. `PROPTEST_CASES` sets the number of cases
//! (default 24 each: every case is several HTTP requests).

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use scim_gateway::config::ScimSettings;
use scim_gateway::scim::filter;
use scim_gateway::scim::normalize::normalize;
use scim_gateway::scim::patch::{self, MemberChange, PatchLimits};
use scim_gateway::scim::schema::{Registry, ResourceType};
use serde_json::{Value, json};

use crate::helpers::*;

const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// A member id that exists nowhere.
const MISSING: &str = "00000000-0000-4000-8000-00000000dead";

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs a property whose cases need the async test gateway.
fn run_property<S: Strategy>(
    strategy: S,
    setup: impl AsyncFnOnce() -> Fixture,
    case: impl AsyncFn(&Fixture, S::Value) -> Result<(), String>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fx = rt.block_on(setup());
    let result = runner().run(&strategy, |input| {
        rt.block_on(case(&fx, input)).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

struct Fixture {
    app: TestApp,
    registry: Registry,
    /// Users that exist, usable as members.
    users: Vec<String>,
    /// Numbers fresh names.
    next: std::sync::atomic::AtomicUsize,
}

impl Fixture {
    fn fresh(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}{n}")
    }
}

async fn fixture() -> Fixture {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for name in ["m1", "m2", "m3", "taken"] {
        users.push(
            app.create_user(name).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    app.create_group("taken-group", &[]).await;
    Fixture {
        app,
        registry: Registry::load(&ScimSettings::default()).unwrap(),
        users,
        next: Default::default(),
    }
}

// --- PATCH: all or nothing, and twice changes nothing ------------------------

/// A member reference: one of the fixture's users, an id that does not
/// exist, or the group itself (index 4 and 5).
type Who = usize;

#[derive(Debug, Clone)]
enum Step {
    Json(Value),
    AddMember(Who),
    RemoveMember(Who),
    ReplaceMembers(Vec<Who>),
}

fn text() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => "[a-zA-Zé ]{1,6}".prop_map(Value::from),
        1 => Just(json!("")),
        1 => Just(Value::Null),
        1 => Just(json!(7)),
    ]
    .boxed()
}

fn email() -> BoxedStrategy<Value> {
    prop::sample::select(vec!["a@x.org", "A@X.org", "b@y.com", "c@z.net"])
        .prop_map(Value::from)
        .boxed()
}

fn user_step() -> BoxedStrategy<Step> {
    prop_oneof![
        text().prop_map(|v| json!({"op": "replace", "path": "title", "value": v})),
        text().prop_map(|v| json!({"op": "add", "path": "title", "value": v})),
        Just(json!({"op": "remove", "path": "title"})),
        text().prop_map(|v| json!({"op": "replace", "path": "name.givenName", "value": v})),
        (email(), prop::sample::select(vec!["work", "home"]))
            .prop_map(|(e, t)| json!({"op": "add", "path": "emails", "value": [{"value": e, "type": t}]})),
        email().prop_map(|e| json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": e})),
        Just(json!({"op": "remove", "path": "emails[type eq \"home\"]"})),
        email().prop_map(|e| json!({"op": "remove", "path": format!("emails[value eq \"{}\"]", e.as_str().unwrap())})),
        prop::sample::select(vec![json!(true), json!(false), json!("True"), json!("maybe")])
            .prop_map(|v| json!({"op": "replace", "path": "active", "value": v})),
        (text(), text()).prop_map(|(a, b)| json!({"op": "add", "value": {"nickName": a, "name.familyName": b}})),
        Just(json!({"op": "replace", "path": "userName", "value": "TAKEN"})),
        Just(json!({"op": "replace", "path": "shoeSize", "value": 1})),
        Just(json!({"op": "remove"})),
        Just(json!({"op": "replace", "path": "id", "value": "x"})),
    ]
    .prop_map(Step::Json)
    .boxed()
}

fn group_step() -> BoxedStrategy<Step> {
    prop_oneof![
        3 => (0..6usize).prop_map(Step::AddMember),
        2 => (0..6usize).prop_map(Step::RemoveMember),
        1 => prop::collection::vec(0..6usize, 0..3).prop_map(Step::ReplaceMembers),
        1 => Just(Step::Json(json!({"op": "remove", "path": "members"}))),
        1 => text().prop_map(|v| Step::Json(json!({"op": "replace", "path": "externalId", "value": v}))),
        1 => Just(Step::Json(json!({"op": "replace", "path": "displayName", "value": "taken-group"}))),
        1 => Just(Step::Json(json!({"op": "replace", "path": "members[value eq \"x\"].display", "value": "y"}))),
    ]
    .boxed()
}

/// Whether the case is about a group, and its steps.
fn patch_case() -> BoxedStrategy<(bool, Vec<Step>)> {
    prop_oneof![
        prop::collection::vec(user_step(), 1..5).prop_map(|s| (false, s)),
        prop::collection::vec(group_step(), 1..5).prop_map(|s| (true, s)),
    ]
    .boxed()
}

fn member_id(fx: &Fixture, who: Who, group: &str) -> String {
    match who {
        0..=3 => fx.users[who].clone(),
        4 => MISSING.to_string(),
        _ => group.to_string(),
    }
}

fn to_op(fx: &Fixture, step: &Step, group: &str) -> Value {
    let refs = |ids: &[Who]| -> Vec<Value> {
        ids.iter()
            .map(|w| json!({"value": member_id(fx, *w, group)}))
            .collect()
    };
    match step {
        Step::Json(op) => op.clone(),
        Step::AddMember(w) => json!({"op": "add", "path": "members", "value": refs(&[*w])}),
        Step::RemoveMember(w) => json!({"op": "remove",
            "path": format!("members[value eq \"{}\"]", member_id(fx, *w, group))}),
        Step::ReplaceMembers(ws) => json!({"op": "replace", "path": "members", "value": refs(ws)}),
    }
}

/// What the gateway must answer: the stored document and members after the
/// PATCH, or `None` when it must refuse it.
fn expected(
    fx: &Fixture,
    rt: &ResourceType,
    before: &Value,
    body: &Value,
    id: &str,
) -> Option<(Value, BTreeSet<String>)> {
    let ops = patch::parse(body, PatchLimits::default()).ok()?;
    let old = normalize(rt, before).ok()?.doc;
    let patched = patch::apply(rt, &old, &ops).ok()?;
    let doc = normalize(rt, &Value::Object(patched.doc)).ok()?.doc;
    let taken = |attr: &str, value: &str| {
        doc.get(attr)
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(value))
    };
    if taken("userName", "taken") || taken("displayName", "taken-group") {
        return None; // 409 uniqueness
    }
    let mut members: BTreeSet<String> = members_of(before);
    for change in &patched.members {
        match change {
            MemberChange::Add(refs) => {
                for r in refs {
                    if r.value == id || !fx.users.contains(&r.value) {
                        return None;
                    }
                    members.insert(r.value.clone());
                }
            }
            MemberChange::Remove(ids) => ids.iter().for_each(|i| {
                members.remove(i);
            }),
            MemberChange::RemoveAll => members.clear(),
            MemberChange::RemoveWhere(_) => return None,
        }
    }
    Some((Value::Object(doc), members))
}

fn members_of(resource: &Value) -> BTreeSet<String> {
    resource["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The resource as stored (normalised) plus its members and version.
fn stored(rt: &ResourceType, resource: &Value) -> (Value, BTreeSet<String>, Value) {
    let doc = normalize(rt, resource).map(|n| Value::Object(n.doc));
    (
        doc.unwrap_or(Value::Null),
        members_of(resource),
        resource["meta"]["version"].clone(),
    )
}

async fn patch_case_runs(fx: &Fixture, (is_group, steps): (bool, Vec<Step>)) -> Result<(), String> {
    let app = &fx.app;
    let (rt, path) = if is_group {
        let g = app.create_group(&fx.fresh("g"), &[&fx.users[0]]).await;
        (
            &fx.registry.group,
            format!("/Groups/{}", g["id"].as_str().unwrap()),
        )
    } else {
        let u = app
            .create_user_from(json!({"userName": fx.fresh("p"), "title": "T", "nickName": "N",
                "emails": [{"value": "w@x.org", "type": "work"}, {"value": "h@x.org", "type": "home"}]}))
            .await;
        (
            &fx.registry.user,
            format!("/Users/{}", u["id"].as_str().unwrap()),
        )
    };
    let id = path.rsplit('/').next().unwrap().to_string();
    let ops: Vec<Value> = steps.iter().map(|s| to_op(fx, s, &id)).collect();
    let body = patch_op(json!(ops));
    let before = app.get_ok(&path).await;
    let audit_before = app.audit_count(Some(&id));
    let expect = expected(fx, rt, &before, &body, &id);
    let res = app.patch(&path, &body).await;
    let status = res.status().as_u16();
    let answer: Value = res.json().await.unwrap_or(Value::Null);
    let after = app.get_ok(&path).await;
    match expect {
        None => {
            if status < 400 {
                return Err(format!("{body}: accepted ({status}) but must be refused"));
            }
            if after != before || app.audit_count(Some(&id)) != audit_before {
                return Err(format!(
                    "{body}: refused ({answer}) but changed {before} → {after}"
                ));
            }
            Ok(())
        }
        Some((doc, members)) => {
            if status != 200 {
                return Err(format!(
                    "{body}: refused ({status} {answer}) but must apply"
                ));
            }
            let (got_doc, got_members, version) = stored(rt, &after);
            if got_doc != doc || got_members != members {
                return Err(format!(
                    "{body}: applied partly: stored {got_doc} {got_members:?}, expected {doc} {members:?}"
                ));
            }
            // Again. Where the engine, run on the new state, changes
            // nothing, nothing changes, not even the version. Not every
            // PATCH is idempotent: a remove by value followed by a replace
            // of the same element removes it the second time and adds it
            // at the end, so there the second answer must be the engine's.
            let again_expect = expected(fx, rt, &after, &body, &id);
            let res = app.patch(&path, &body).await;
            let again_status = res.status().as_u16();
            let again = app.get_ok(&path).await;
            match again_expect {
                Some((d, m)) if d == got_doc && m == got_members => {
                    if again != after {
                        return Err(format!(
                            "{body}: the second PATCH ({again_status}) changed {after} → {again} (version {version})"
                        ));
                    }
                }
                Some((d, m)) => {
                    let (again_doc, again_members, _) = stored(rt, &again);
                    if again_status != 200 || again_doc != d || again_members != m {
                        return Err(format!(
                            "{body}: the second PATCH ({again_status}) gave {again_doc} {again_members:?}, expected {d} {m:?}"
                        ));
                    }
                }
                None => {
                    if again_status < 400 || again != after {
                        return Err(format!(
                            "{body}: the second PATCH ({again_status}) must be refused and change nothing: {after} → {again}"
                        ));
                    }
                }
            }
            Ok(())
        }
    }
}

#[test]
fn a_patch_applies_completely_or_not_at_all_and_twice_changes_nothing() {
    run_property(patch_case(), fixture, patch_case_runs);
}

// --- filters: SQL plan + evaluator = evaluator alone -------------------------

#[derive(Debug, Clone)]
struct RandomUser {
    user_name: String,
    display: Option<String>,
    title: Option<String>,
    active: Option<bool>,
    external: Option<String>,
    employee: Option<String>,
    emails: Vec<(String, &'static str)>,
}

fn word() -> BoxedStrategy<String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "ab", "AB", "Ab", "abc", "b", "ba", "é", "É", "x y", "a_b", "a%", "*", "[a", "ÉB"
        ])
        .prop_map(str::to_string),
        // Longer than the attribute index keeps (512 bytes), and its tail.
        1 => Just(format!("{}Ab", "é".repeat(255))),
        1 => Just("éAb".to_string()),
    ]
    .boxed()
}

fn random_user() -> BoxedStrategy<RandomUser> {
    (
        word(),
        prop::option::of(word()),
        prop::option::of(word()),
        prop::option::of(any::<bool>()),
        prop::option::of(word()),
        prop::option::of(word()),
        prop::collection::vec((word(), prop::sample::select(vec!["work", "home"])), 0..3),
    )
        .prop_map(
            |(user_name, display, title, active, external, employee, emails)| RandomUser {
                user_name,
                display,
                title,
                active,
                external,
                employee,
                emails,
            },
        )
        .boxed()
}

fn attr() -> BoxedStrategy<&'static str> {
    prop::sample::select(vec![
        "userName",
        "displayName",
        "title",
        "externalId",
        "emails.value",
        "emails.type",
        "USERNAME",
        "active",
        "emails",
        "id",
        "meta.created",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    ])
    .boxed()
}

/// A random filter over the random users' attributes.
fn random_filter() -> BoxedStrategy<String> {
    let op = prop::sample::select(vec!["eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le"]);
    let leaf = prop_oneof![
        4 => (attr(), op, word()).prop_map(|(a, o, w)| {
            if a == "active" {
                let op = if o == "ne" { "ne" } else { "eq" };
                format!("active {op} {}", w.len() % 2 == 0)
            } else if a == "meta.created" {
                // A dateTime compares with a dateTime (anything else is 400).
                format!("{a} {o} \"20{:02}-01-01T00:00:00Z\"", w.len() * 7 % 40)
            } else {
                format!("{a} {o} \"{w}\"")
            }
        }),
        1 => attr().prop_map(|a| format!("{a} pr")),
        1 => (word(), prop::sample::select(vec!["work", "home"]))
            .prop_map(|(w, t)| format!("emails[type eq \"{t}\" and value sw \"{w}\"]")),
        1 => prop::sample::select(vec![
            "id pr",
            "meta.created gt \"2000-01-01T00:00:00Z\"",
            "meta.lastModified lt \"2000-01-01T00:00:00+01:00\"",
            "active pr",
        ]).prop_map(str::to_string),
        1 => (word(), word()).prop_map(|(a, b)| format!(
            "emails[value co \"{a}\" or not (type eq \"home\") and value ne \"{b}\"]"
        )),
        1 => (word(), prop::sample::select(vec!["work", "home"]))
            .prop_map(|(w, t)| format!("emails[type eq \"{t}\"].value ew \"{w}\"")),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
    .boxed()
}

async fn filter_case_runs(
    fx: &Fixture,
    (users, filters): (Vec<RandomUser>, Vec<String>),
) -> Result<(), String> {
    // The tenant holds only this case's users: they are deleted at the end.
    let app = &fx.app;
    let mut created = Vec::new();
    for u in &users {
        let mut body =
            json!({"schemas": [USER_URN], "userName": format!("{}-{}", u.user_name, fx.fresh(""))});
        for (k, v) in [
            ("displayName", &u.display),
            ("title", &u.title),
            ("externalId", &u.external),
        ] {
            if let Some(v) = v {
                body[k] = json!(v);
            }
        }
        if let Some(e) = &u.employee {
            body[ENTERPRISE_USER] = json!({"employeeNumber": e});
        }
        if let Some(a) = u.active {
            body["active"] = json!(a);
        }
        body["emails"] = json!(
            u.emails
                .iter()
                .map(|(v, t)| json!({"value": v, "type": t}))
                .collect::<Vec<_>>()
        );
        let res = app.post("/Users", &body).await;
        if res.status() != 201 {
            return Err(format!("creating {body}: {}", res.status()));
        }
        let user: Value = res.json().await.unwrap();
        created.push(user["id"].as_str().unwrap().to_string());
    }
    let outcome = compare_filters(fx, &filters).await;
    for id in created {
        assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
    }
    outcome
}

async fn compare_filters(fx: &Fixture, filters: &[String]) -> Result<(), String> {
    let app = &fx.app;
    let all = app.list_ok("/Users", &[("count", "200")]).await;
    let docs = all["Resources"].as_array().unwrap().clone();
    let rt = &fx.registry.user;
    for text in filters {
        if text.len() > ScimSettings::default().max_filter_length {
            continue; // refused before it is parsed (tests/api/limits.rs)
        }
        let f = filter::parse(text).map_err(|e| format!("{text}: {e}"))?;
        let expected: BTreeSet<String> = docs
            .iter()
            .filter(|d| filter::matches(rt, &f, d))
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        let res = app
            .list_with("/Users", &[("filter", text), ("count", "200")])
            .await;
        let status = res.status();
        let list: Value = res.json().await.unwrap();
        if status != 200 {
            return Err(format!("{text}: {status} {list}"));
        }
        let got: BTreeSet<String> = resource_field(&list, "id").into_iter().collect();
        if got != expected {
            return Err(format!(
                "{text}: the gateway selects {got:?}, the evaluator {expected:?} among {}",
                json!(docs)
            ));
        }
        // A middle page: the matches in creation order, counted in full.
        let in_order: Vec<String> = docs
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .filter(|id| expected.contains(id))
            .collect();
        let page = app
            .list_ok(
                "/Users",
                &[("filter", text), ("startIndex", "2"), ("count", "2")],
            )
            .await;
        let want: Vec<String> = in_order.iter().skip(1).take(2).cloned().collect();
        if resource_field(&page, "id") != want || page["totalResults"] != json!(in_order.len()) {
            return Err(format!("{text}: page 2-3 is {page}, expected {want:?}"));
        }
    }
    Ok(())
}

#[test]
fn a_filter_selects_through_its_sql_plan_what_the_evaluator_selects() {
    let case = (
        prop::collection::vec(random_user(), 1..7),
        prop::collection::vec(random_filter(), 1..8),
    );
    run_property(
        case,
        || async {
            Fixture {
                app: spawn_app().await,
                registry: Registry::load(&ScimSettings::default()).unwrap(),
                users: Vec::new(),
                next: Default::default(),
            }
        },
        filter_case_runs,
    );
}
