//! The page a visitor sees instead of a bare error, and its JSON twin for API clients.
//!
//! Templates are the files in `www/`, compiled into the worker by `build.rs` so the page still
//! works when everything else is failing. A template may use:
//!
//! | placeholder | value |
//! |---|---|
//! | `{{status}}` | the HTTP status, e.g. `502` |
//! | `{{reason}}` | its reason phrase, e.g. `Bad Gateway` |
//! | `{{event_id}}` | the Sentry event id to quote (empty when no event was sent) |
//! | `{{ray_id}}` | Cloudflare's ray id (empty when absent) |
//! | `{{misconfigured}}` | non-empty when the edge itself is misconfigured (bad `ORIGIN_URL`) |
//! | `{{#name}}…{{/name}}` | the inner part only when `name` is non-empty |
//! | `{{^name}}…{{/name}}` | the inner part only when `name` is empty |
//!
//! Every substituted value is HTML-escaped. (`{{> file}}` partials are resolved at build time.)

use serde_json::{json, Map, Value};

mod templates {
    include!(concat!(env!("OUT_DIR"), "/pages.rs"));
}

/// What the page says.
#[derive(Debug, Clone, Copy)]
pub struct PageInput<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub event_id: Option<&'a str>,
    pub ray_id: Option<&'a str>,
    /// The edge cannot proxy at all (bad `ORIGIN_URL`): the page says so, without details.
    pub misconfigured: bool,
}

/// The placeholders a template may name.
pub const PLACEHOLDERS: &[&str] = &["status", "reason", "event_id", "ray_id", "misconfigured"];

impl PageInput<'_> {
    /// The HTML page, from `www/<status>.html` when present, else `www/default.html`.
    pub fn html(&self) -> String {
        render(template_for(self.status), |name| self.value(name))
    }

    /// `{"event_id":…,"ray_id":…,"reason":…,"status":…}`; absent ids are left out.
    pub fn json(&self) -> String {
        let mut body = Map::new();
        body.insert("status".into(), json!(self.status));
        body.insert("reason".into(), json!(self.reason));
        if let Some(id) = self.event_id {
            body.insert("event_id".into(), json!(id));
        }
        if let Some(ray) = self.ray_id {
            body.insert("ray_id".into(), json!(ray));
        }
        Value::Object(body).to_string()
    }

    fn value(&self, name: &str) -> String {
        match name {
            "status" => self.status.to_string(),
            "reason" => self.reason.to_owned(),
            "event_id" => self.event_id.unwrap_or_default().to_owned(),
            "ray_id" => self.ray_id.unwrap_or_default().to_owned(),
            "misconfigured" => if self.misconfigured { "1" } else { "" }.to_owned(),
            _ => String::new(),
        }
    }
}

/// The template for a status: its own file if `www/` has one, else the default.
pub fn template_for(status: u16) -> &'static str {
    templates::PAGES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(templates::DEFAULT_PAGE, |(_, page)| page)
}

/// Every embedded template, default first, for checks.
pub fn all_templates() -> impl Iterator<Item = &'static str> {
    std::iter::once(templates::DEFAULT_PAGE).chain(templates::PAGES.iter().map(|(_, p)| *p))
}

/// True when the client asked for JSON more than for HTML (`Accept` with q-values). A missing
/// header, `*/*` or a browser's usual header gives HTML.
pub fn prefers_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let (mut json_q, mut html_q) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == "application/json" || media.ends_with("+json") {
            json_q = json_q.max(q);
        } else if media == "text/html" || media == "application/xhtml+xml" {
            html_q = html_q.max(q);
        }
    }
    json_q > 0.0 && json_q > html_q
}

/// Renders `template`, asking `value` for each placeholder. Malformed tags are copied as text.
pub fn render(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    render_into(&mut out, template, &value);
    out
}

fn render_into(out: &mut String, mut rest: &str, value: &dyn Fn(&str) -> String) {
    while let Some(start) = rest.find("{{") {
        let (text, tail) = rest.split_at(start);
        out.push_str(text);
        let Some(end) = tail.find("}}") else {
            out.push_str(tail);
            return;
        };
        let tag = tail.get(2..end).unwrap_or_default().trim();
        let after = tail.get(end + 2..).unwrap_or_default();
        let section = tag
            .strip_prefix('#')
            .map(|name| (name, true))
            .or_else(|| tag.strip_prefix('^').map(|name| (name, false)));
        match section {
            Some((name, when_present)) => {
                let close = format!("{{{{/{name}}}}}");
                let Some(close_at) = after.find(&close) else {
                    // Unclosed section: show it literally rather than drop content.
                    out.push_str(tail.get(..end + 2).unwrap_or_default());
                    rest = after;
                    continue;
                };
                let inner = after.get(..close_at).unwrap_or_default();
                if value(name.trim()).is_empty() != when_present {
                    render_into(out, inner, value);
                }
                rest = after.get(close_at + close.len()..).unwrap_or_default();
            }
            None => {
                escape_html_into(out, &value(tag));
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn escape_html_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> String {
        match name {
            "a" => "<b>&\"'</b>".into(),
            "yes" => "1".into(),
            _ => String::new(),
        }
    }

    #[test]
    fn substitutes_and_escapes() {
        assert_eq!(
            render("x{{a}}y", vars),
            "x&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;y"
        );
        assert_eq!(
            render("{{ a }}", vars),
            "&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;"
        );
        assert_eq!(render("[{{missing}}]", vars), "[]");
    }

    #[test]
    fn sections_follow_presence() {
        assert_eq!(
            render("{{#yes}}Y{{a}}{{/yes}}|{{^yes}}N{{/yes}}", vars),
            "Y&lt;b&gt;&amp;&quot;&#39;&lt;/b&gt;|"
        );
        assert_eq!(render("{{#no}}Y{{/no}}|{{^no}}N{{/no}}", vars), "|N");
    }

    #[test]
    fn malformed_tags_are_kept_as_text() {
        assert_eq!(render("a {{ b", vars), "a {{ b");
        assert_eq!(render("{{#yes}}open", vars), "{{#yes}}open");
        assert_eq!(render("}} {", vars), "}} {");
    }

    #[test]
    fn page_shows_the_event_id_only_when_sent() {
        let with = PageInput {
            status: 502,
            reason: "Bad Gateway",
            event_id: Some("0123456789abcdef0123456789abcdef"),
            ray_id: Some("8f00-AMS"),
            misconfigured: false,
        };
        let html = with.html();
        assert!(html.contains("0123456789abcdef0123456789abcdef"));
        assert!(html.contains("8f00-AMS"));
        assert!(html.contains("502"));
        let without = PageInput {
            event_id: None,
            ray_id: None,
            ..with
        };
        let html = without.html();
        assert!(!html.to_lowercase().contains("event id"), "{html}");
        assert!(!html.contains("{{"));
    }

    #[test]
    fn every_status_gets_a_page_and_templates_use_known_placeholders() {
        for status in [500, 501, 502, 503, 504, 520, 599] {
            let page = PageInput {
                status,
                reason: "R",
                event_id: Some("e"),
                ray_id: Some("r"),
                misconfigured: false,
            };
            let html = page.html();
            assert!(html.starts_with("<!doctype html>"), "{status}");
            assert!(!html.contains("{{"), "{status}: leftover tag");
        }
        for template in all_templates() {
            let mut rest = template;
            while let Some(start) = rest.find("{{") {
                let tail = &rest[start + 2..];
                let end = tail.find("}}").unwrap();
                let name = tail[..end]
                    .trim()
                    .trim_start_matches(['#', '^', '/'])
                    .trim();
                assert!(PLACEHOLDERS.contains(&name), "unknown placeholder {name:?}");
                rest = &tail[end..];
            }
        }
    }

    #[test]
    fn reflected_values_are_escaped_in_the_page() {
        let page = PageInput {
            status: 500,
            reason: "<script>alert(1)</script>",
            event_id: Some("\"><script>"),
            ray_id: None,
            misconfigured: false,
        };
        let html = page.html();
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn misconfigured_page_says_so_without_details() {
        let page = PageInput {
            status: 500,
            reason: "Internal Server Error",
            event_id: None,
            ray_id: None,
            misconfigured: true,
        };
        let html = page.html();
        assert!(html.contains("misconfigured"), "{html}");
        let normal = PageInput {
            misconfigured: false,
            ..page
        }
        .html();
        assert!(!normal.contains("misconfigured"), "{normal}");
    }

    #[test]
    fn json_body() {
        let page = PageInput {
            status: 503,
            reason: "Service Unavailable",
            event_id: Some("ab"),
            ray_id: None,
            misconfigured: false,
        };
        assert_eq!(
            page.json(),
            r#"{"event_id":"ab","reason":"Service Unavailable","status":503}"#
        );
        let page = PageInput {
            event_id: None,
            ..page
        };
        assert_eq!(
            page.json(),
            r#"{"reason":"Service Unavailable","status":503}"#
        );
    }

    #[test]
    fn accept_negotiation() {
        let table = [
            (None, false),
            (Some("*/*"), false),
            (Some("application/json"), true),
            (Some("application/problem+json"), true),
            (
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                false,
            ),
            (Some("application/json, text/plain, */*"), true),
            (Some("text/html;q=0.5, application/json;q=0.9"), true),
            (Some("application/json;q=0.4, text/html"), false),
            (Some("application/json;q=0"), false),
        ];
        for (accept, want) in table {
            assert_eq!(prefers_json(accept), want, "{accept:?}");
        }
    }
}
