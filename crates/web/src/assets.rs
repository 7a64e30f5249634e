//! The front end, compiled in: one page, one stylesheet, one script. No build step, no
//! framework, nothing fetched from elsewhere (the Content-Security-Policy allows this origin
//! only).

/// The single page; the script shows the screen the path names.
pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_CSS: &str = include_str!("assets/app.css");
pub const APP_JS: &str = include_str!("assets/app.js");
