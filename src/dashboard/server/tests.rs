use axum::http::Method;

use super::{admit, same_token};
use crate::dashboard::calendar::{Span, Zone};
use crate::dashboard::server::routes::{CalendarQuery, calendar_request};

fn hosts() -> Vec<String> {
    vec!["127.0.0.1:8765".to_owned(), "localhost:8765".to_owned()]
}

#[test]
fn a_get_needs_our_host_and_no_token() {
    let hosts = hosts();
    assert!(admit(&Method::GET, Some("127.0.0.1:8765"), None, (&hosts, "t0k")).is_ok());
    assert!(admit(&Method::GET, Some("localhost:8765"), None, (&hosts, "t0k")).is_ok());
    let (status, message) = admit(
        &Method::GET,
        Some("evil.example:8765"),
        None,
        (&hosts, "t0k"),
    )
    .unwrap_err();
    assert_eq!(status, 403);
    assert!(message.contains("evil.example:8765"), "{message}");
    assert!(message.contains("http://127.0.0.1:8765/"), "{message}");
    assert_eq!(
        admit(&Method::GET, None, None, (&hosts, "t0k"))
            .unwrap_err()
            .0,
        403
    );
}

#[test]
fn a_post_needs_the_token_too() {
    let hosts = hosts();
    let host = Some("127.0.0.1:8765");
    assert!(admit(&Method::POST, host, Some("t0k"), (&hosts, "t0k")).is_ok());
    for wrong in [None, Some(""), Some("t0K"), Some("t0k "), Some("t0")] {
        let (status, message) = admit(&Method::POST, host, wrong, (&hosts, "t0k")).unwrap_err();
        assert_eq!(status, 403, "{wrong:?}");
        assert!(message.contains("x-dashboard-token"), "{message}");
    }
}

#[test]
fn tokens_compare_whole() {
    assert!(same_token("abc", "abc"));
    assert!(!same_token("abc", "abd"));
    assert!(!same_token("abc", "ab"));
    assert!(!same_token("", "a"));
}

#[test]
fn the_calendar_query_defaults_to_this_month_in_each_windows_zone() {
    let now: jiff::Timestamp = "2026-12-07T23:30:00Z".parse().unwrap();
    let request = calendar_request(&CalendarQuery::default(), now).unwrap();
    assert_eq!(request.span, Span::Month);
    assert_eq!(request.date.to_string(), "2026-12-07");
    assert_eq!(request.zone, Zone::Own);
    let query = CalendarQuery {
        span: Some("week".into()),
        date: Some("2026-04-01".into()),
        zone: Some("Australia/Sydney".into()),
    };
    let request = calendar_request(&query, now).unwrap();
    assert_eq!(request.span, Span::Week);
    assert_eq!(request.date.to_string(), "2026-04-01");
    assert_eq!(request.zone, Zone::Named("Australia/Sydney".into()));
    let bad = CalendarQuery {
        span: Some("year".into()),
        ..CalendarQuery::default()
    };
    assert!(
        calendar_request(&bad, now)
            .unwrap_err()
            .contains("month or week")
    );
    let bad = CalendarQuery {
        date: Some("07/12/2026".into()),
        ..CalendarQuery::default()
    };
    assert!(
        calendar_request(&bad, now)
            .unwrap_err()
            .contains("YYYY-MM-DD")
    );
}
