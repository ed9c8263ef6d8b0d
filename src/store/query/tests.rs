//! How predicates render and which texts stay prepared.

use super::*;
use crate::store::query::*;

#[test]
fn successor_bounds_exactly_the_strings_with_a_prefix() {
    assert_eq!(successor("ab").as_deref(), Some("ac"));
    assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
    assert_eq!(successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
    assert_eq!(successor("\u{10FFFF}"), None);
    assert_eq!(successor(""), None);
}

/// Counts the statements a connection keeps prepared.
struct Kept(std::sync::Arc<std::sync::Mutex<usize>>);

impl diesel::connection::Instrumentation for Kept {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        if let diesel::connection::InstrumentationEvent::CacheQuery { .. } = event
            && let Ok(mut n) = self.0.lock()
        {
            *n += 1;
        }
    }
}

/// A migrated in-memory SQLite connection and the count of statements
/// it has kept prepared.
fn counting() -> anyhow::Result<(AnyConnection, impl Fn() -> usize)> {
    let mut sqlite = diesel::SqliteConnection::establish(":memory:")?;
    let kept = std::sync::Arc::new(std::sync::Mutex::new(0));
    sqlite.set_instrumentation(Kept(kept.clone()));
    let mut conn = AnyConnection::Sqlite(sqlite);
    crate::store::run_migrations(&mut conn)?;
    let count = move || {
        *kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    Ok((conn, count))
}

#[test]
fn a_filter_shape_stays_prepared_and_a_long_id_list_does_not() -> anyhow::Result<()> {
    let (mut conn, count) = counting()?;
    let before = count();
    let email = |v: &str| Pred::Index {
        attr: "emails.value".into(),
        test: Test::Eq(v.into()),
    };
    for v in ["a@x.example", "b@x.example", "c@x.example"] {
        let found = find_candidates(&mut conn, "t", "User", (&email(v), &Pred::False), None, 10)?;
        assert!(found.is_empty());
    }
    assert_eq!(count() - before, 1, "one shape, prepared once");
    let ids = |n: usize| Pred::Ids((0..n).map(|i| format!("id-{i}")).collect());
    for n in [1, 2, 1, 2] {
        let found = find_candidates(&mut conn, "t", "User", (&ids(n), &ids(n)), None, 10)?;
        assert!(found.is_empty());
    }
    assert_eq!(count() - before, 3, "a short id list, one text per length");
    for n in [MAX_KEPT_LIST + 1, MAX_KEPT_LIST + 2, MAX_KEPT_LIST + 1] {
        let found = find_candidates(&mut conn, "t", "User", (&ids(n), &ids(n)), None, 10)?;
        assert!(found.is_empty());
    }
    assert_eq!(count() - before, 3, "long id lists are never kept prepared");
    Ok(())
}

#[test]
fn admission_stops_at_its_bound() {
    // A list of its own: the process-wide one is shared with the other
    // tests when they run as threads of one process (`cargo test`).
    static LIST: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
    let texts: Vec<String> = (0..MAX_ADMITTED + 5)
        .map(|i| format!("SELECT {i} AS admission_test"))
        .collect();
    let admitted_now = texts.iter().filter(|t| admit(&LIST, t).is_some()).count();
    assert_eq!(admitted_now, MAX_ADMITTED);
    assert!(admit(&LIST, &texts[MAX_ADMITTED + 4]).is_none());
    // An admitted text is found again, as the same leaked copy.
    let first = admit(&LIST, &texts[0]);
    assert!(first.is_some_and(|f| admit(&LIST, &texts[0]).is_some_and(|g| std::ptr::eq(f, g))));
    static SHORT: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
    assert!(admit(&SHORT, &"x".repeat(MAX_ADMITTED_LEN + 1)).is_none());
}

#[test]
fn a_long_or_chain_is_not_kept_prepared() -> anyhow::Result<()> {
    let (mut conn, count) = counting()?;
    let before = count();
    for n in [MAX_ADMITTED_BINDS, MAX_ADMITTED_BINDS + 1] {
        let chain = Pred::Or(
            (0..n)
                .map(|i| Pred::Index {
                    attr: "username".into(),
                    test: Test::Eq(format!("user{i}")),
                })
                .collect(),
        );
        let found = find_candidates(&mut conn, "t", "User", (&chain, &chain), None, 10)?;
        assert!(found.is_empty());
    }
    assert_eq!(
        count() - before,
        0,
        "or chains of many terms stay unprepared"
    );
    Ok(())
}

#[test]
fn constants_fold() {
    let leaf = || Pred::Ids(vec!["a".into()]);
    assert_eq!(Pred::and(vec![Pred::True, leaf()]), leaf());
    assert_eq!(Pred::and(vec![Pred::False, leaf()]), Pred::False);
    assert_eq!(Pred::or(vec![Pred::False, leaf()]), leaf());
    assert_eq!(Pred::or(vec![Pred::True, leaf()]), Pred::True);
    assert_eq!(Pred::negate(Pred::negate(leaf())), leaf());
}
