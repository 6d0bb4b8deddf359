//! The page, its style and script, embedded in the binary: the dashboard needs no network.

/// The single page; `{{TOKEN}}` is replaced by the process's POST token when served.
pub const INDEX_HTML: &str = include_str!("assets/index.html");
/// The style sheet (light and dark, following the system).
pub const APP_CSS: &str = include_str!("assets/app.css");
/// The script: routing, rendering, live updates (EventSource) and actions.
pub const APP_JS: &str = include_str!("assets/app.js");
/// The tab's icon.
pub const FAVICON_SVG: &str = include_str!("assets/favicon.svg");
